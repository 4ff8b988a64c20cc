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
running() { [[ -f $(pidfile "$1") ]] && kill -0 "$(cat "$(pidfile "$1")")" 2>/dev/null; }

start() {
  for svc in "${chosen[@]}"; do
    if running "$svc"; then log "$svc already running"; continue; fi
    BILLSTREAM_WEBHOOKS_ALLOW_PRIVATE_URLS=${BILLSTREAM_WEBHOOKS_ALLOW_PRIVATE_URLS:-true} \
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
