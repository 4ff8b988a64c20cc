#!/usr/bin/env bash
# Fuzzes every service's API from its own OpenAPI document with schemathesis (bounded examples,
# fixed seed) as a fresh tenant, against the running stack: any 5xx fails the run.
# Usage: fuzz.sh [max examples per operation, default 10]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$BILLSTREAM_ROOT"
PYTHON="${BILLSTREAM_PYTHON:-$BILLSTREAM_ROOT/.venv/bin/python}"
examples=${1:-${FUZZ_EXAMPLES:-10}}

key=$("$PYTHON" -c "from deploy.local.demo import create_tenant; print(create_tenant('Fuzz $(date +%s)')['apiKey'])")
# Every service learns the key from billing.tenants: wait until the last one accepts it.
wait_for "the fuzz tenant's key" 30 curl -sf -H "Authorization: Bearer $key" \
  "http://127.0.0.1:${SERVICE_PORT[webhooks]}/api/webhook-endpoints"

failed=0
for svc in "${SERVICES[@]}"; do
  log "fuzzing $svc (${examples} examples per operation)"
  "$BILLSTREAM_ROOT/.venv/bin/schemathesis" run "http://127.0.0.1:${SERVICE_PORT[$svc]}/openapi.json" \
    -H "Authorization: Bearer $key" --checks not_a_server_error --max-examples "$examples" --seed 1 \
    --request-timeout 30 --no-color >"$LOG_DIR/fuzz-$svc.log" 2>&1 || { failed=1; tail -n 60 "$LOG_DIR/fuzz-$svc.log"; }
  grep -E "generated|passed|failed" "$LOG_DIR/fuzz-$svc.log" | tail -n 1 | sed "s/^/  $svc: /" >&2
done
exit $failed
