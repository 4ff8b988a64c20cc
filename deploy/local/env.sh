# Shared settings for the local stack. Sourced by every script in deploy/local.
# Everything is overridable from the environment.
# The local stack runs with development secrets, which only local mode accepts (shared/settings.py).
export BILLSTREAM_ENV="${BILLSTREAM_ENV:-local}"
BILLSTREAM_ROOT="${BILLSTREAM_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
STATE_DIR="${BILLSTREAM_STATE_DIR:-$BILLSTREAM_ROOT/.local}"
LOG_DIR="$STATE_DIR/logs"
RUN_DIR="$STATE_DIR/run"
PG_PORT="${BILLSTREAM_PG_PORT:-55432}"
PG_DATA="$STATE_DIR/pgdata"
KAFKA_PORT="${BILLSTREAM_KAFKA_PORT:-59092}"
KAFKA_CONTROLLER_PORT="${BILLSTREAM_KAFKA_CONTROLLER_PORT:-59093}"
KAFKA_VERSION="${BILLSTREAM_KAFKA_VERSION:-4.1.1}"
KAFKA_LIBS="${BILLSTREAM_KAFKA_LIBS:-$STATE_DIR/kafka-$KAFKA_VERSION/libs}"  # jars only: a second stack may share them
KAFKA_DATA="$STATE_DIR/kafka-data"
GATEWAY_PORT="${BILLSTREAM_GATEWAY_PORT:-3000}"
SERVICES=(invoicing payments dunning webhooks)
# Each service's port is the variable the service itself reads (services/<name>/settings.py).
declare -A SERVICE_PORT=([invoicing]=${BILLSTREAM_INVOICING_HTTP_PORT:-8001} [payments]=${BILLSTREAM_PAYMENTS_HTTP_PORT:-8002}
                         [dunning]=${BILLSTREAM_DUNNING_HTTP_PORT:-8003} [webhooks]=${BILLSTREAM_WEBHOOKS_HTTP_PORT:-8004})
MAILBOX_SMTP_PORT="${BILLSTREAM_MAILBOX_SMTP_PORT:-52525}"
TOPICS=(billing.invoices billing.customers billing.payments billing.dunning billing.tenants billing.webhooks billing.subscriptions)
TOPIC_PARTITIONS="${BILLSTREAM_TOPIC_PARTITIONS:-6}"
mkdir -p "$LOG_DIR" "$RUN_DIR"

log() {
  if [[ -t 2 ]]; then printf '\033[1;34m[billstream]\033[0m %s\n' "$*" >&2; else printf '[billstream] %s\n' "$*" >&2; fi
}

# wait_for NAME SECONDS CMD...: poll CMD until it succeeds or the deadline passes.
wait_for() {
  local name=$1 secs=$2; shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then log "timed out waiting for $name"; return 1; fi
    sleep 0.3
  done
}
