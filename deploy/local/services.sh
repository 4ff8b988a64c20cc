#!/usr/bin/env bash
# The four Billstream services as background processes, logs in .local/logs/<service>.log.
# Usage: services.sh start|stop|restart|status [service...]
set -euo pipefail
source "$(dirname "$0")/env.sh"
PYTHON="${BILLSTREAM_PYTHON:-$BILLSTREAM_ROOT/.venv/bin/python}"
cmd=${1:-start}; shift || true
if (($#)); then chosen=("$@"); else chosen=("${SERVICES[@]}"); fi

cd "$BILLSTREAM_ROOT"

pidfile() { echo "$RUN_DIR/$1.pid"; }
# Alive, and not a zombie (a process killed with -9 can linger as one, and kill -0 still succeeds).
running() {
  [[ -f $(pidfile "$1") ]] || return 1
  local pid; pid=$(cat "$(pidfile "$1")")
  kill -0 "$pid" 2>/dev/null && [[ $(ps -o stat= -p "$pid" 2>/dev/null) != Z* ]]
}

start() {
  for svc in "${chosen[@]}"; do
    if running "$svc"; then log "$svc already running"; continue; fi
    # Wire each service to this stack's ports (the settings' defaults for the default stack); a
    # variable already set in the environment wins.
    local up=${svc^^} db="billstream_$svc"
    local -a wiring=("BILLSTREAM_${up}_HTTP_PORT=${SERVICE_PORT[$svc]}"
      "BILLSTREAM_${up}_DATABASE_URL=postgresql://$db:$db@127.0.0.1:$PG_PORT/$db"
      "BILLSTREAM_${up}_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT" "BILLSTREAM_${up}_PUBLIC_URL=http://localhost:$GATEWAY_PORT"
      "BILLSTREAM_WEBHOOKS_SMTP_PORT=$MAILBOX_SMTP_PORT")
    local -a envs=()
    for pair in "${wiring[@]}"; do local name=${pair%%=*}; [[ -n ${!name:-} ]] || envs+=("$pair"); done
    env "${envs[@]}" BILLSTREAM_WEBHOOKS_ALLOW_PRIVATE_URLS=${BILLSTREAM_WEBHOOKS_ALLOW_PRIVATE_URLS:-true} \
      nohup "$PYTHON" -m "services.$svc" >>"$LOG_DIR/$svc.log" 2>&1 </dev/null &
    echo $! >"$(pidfile "$svc")"
  done
  for svc in "${chosen[@]}"; do
    wait_for "$svc to be ready" 60 curl -sf "http://127.0.0.1:${SERVICE_PORT[$svc]}/ready" \
      || { tail -n 40 "$LOG_DIR/$svc.log"; exit 1; }
    log "$svc ready on :${SERVICE_PORT[$svc]} (log: .local/logs/$svc.log)"
  done
}

stop() {
  for svc in "${chosen[@]}"; do
    if running "$svc"; then
      local pid; pid=$(cat "$(pidfile "$svc")")
      kill "$pid"
      wait_for "$svc to stop" 20 bash -c "! kill -0 $pid" || kill -9 "$pid" 2>/dev/null || true
      log "$svc stopped"
    fi
    rm -f "$(pidfile "$svc")"
  done
}

restart() { stop; start; }

status() {
  for svc in "${chosen[@]}"; do
    if running "$svc"; then echo "$svc running (pid $(cat "$(pidfile "$svc")"))"; else echo "$svc stopped"; fi
  done
}

"$cmd"
