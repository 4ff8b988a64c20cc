#!/usr/bin/env bash
# PostgreSQL for the local stack: installs the OS package if missing, runs a private cluster
# under .local/pgdata on 127.0.0.1:$PG_PORT, one database and role per service.
# Usage: postgres.sh start|stop|status. Safe to run twice.
set -euo pipefail
source "$(dirname "$0")/env.sh"

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [[ -n $dir ]] && echo "$dir"
}

install_if_missing() {
  if [[ -z $(pg_bin) ]]; then
    log "installing PostgreSQL from the OS packages"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
  fi
}

as_pg() {  # initdb and postgres refuse to run as root
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

psql_admin() { psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qtA "$@"; }

# As root, PostgreSQL runs as the postgres user, which may not reach a checkout under a private
# directory; then the cluster lives under /var/tmp instead (one per checkout).
PG_LOGFILE="$LOG_DIR/postgres.log"
choose_data_dir() {
  [[ $(id -u) -eq 0 ]] || return 0
  mkdir -p "$PG_DATA" && chown postgres "$PG_DATA" "$LOG_DIR"
  if ! runuser -u postgres -- test -w "$PG_DATA"; then
    local key=$BILLSTREAM_ROOT  # one cluster per checkout, and one per extra state dir (make chaos)
    [[ $STATE_DIR == "$BILLSTREAM_ROOT/.local" ]] || key=$STATE_DIR
    PG_DATA="/var/tmp/billstream-$(echo "$key" | sha1sum | cut -c1-10)/pgdata"
    mkdir -p "$PG_DATA" && chown postgres "$PG_DATA" "$(dirname "$PG_DATA")"
    PG_LOGFILE="$(dirname "$PG_DATA")/postgres.log"
    log "using $PG_DATA (the postgres user cannot reach $STATE_DIR)"
  fi
}

start() {
  install_if_missing
  local bin; bin=$(pg_bin)
  mkdir -p "$PG_DATA"
  choose_data_dir
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    log "initialising PostgreSQL cluster in $PG_DATA"
    as_pg "$bin/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if as_pg "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    log "PostgreSQL already running on :$PG_PORT"
  else
    as_pg "$bin/pg_ctl" -D "$PG_DATA" -l "$PG_LOGFILE" -w start \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k /tmp -c max_connections=300" >/dev/null
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') started on :$PG_PORT"
  fi
  for svc in "${SERVICES[@]}"; do
    psql_admin -c "DO \$\$BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'billstream_$svc') THEN
        CREATE ROLE billstream_$svc LOGIN PASSWORD 'billstream_$svc';
      END IF; END\$\$;"
    if [[ -z $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = 'billstream_$svc'") ]]; then
      psql_admin -c "CREATE DATABASE billstream_$svc OWNER billstream_$svc"
    fi
  done
  log "databases ready: ${SERVICES[*]/#/billstream_}"
}

stop() {
  local bin; bin=$(pg_bin) || return 0
  choose_data_dir
  if [[ -f $PG_DATA/PG_VERSION ]] && as_pg "$bin/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$PG_DATA" -m "${1:-fast}" -w stop >/dev/null && log "PostgreSQL stopped"
  fi
}

status() { choose_data_dir; as_pg "$(pg_bin)/pg_ctl" -D "$PG_DATA" status; }

# `stop immediate` crashes it on purpose (make chaos): no checkpoint, recovery on the next start.
cmd=${1:-start}; shift || true
"$cmd" "$@"
