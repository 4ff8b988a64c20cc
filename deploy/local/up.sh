#!/usr/bin/env bash
# Starts the whole local stack: PostgreSQL, Kafka, the four services, the :3000 gateway.
# `up.sh infra` starts only PostgreSQL and Kafka.
set -euo pipefail
HERE="$(dirname "$0")"
"$HERE/setup.sh"
"$HERE/postgres.sh" start
"$HERE/kafka.sh" start
if [[ ${1:-all} != infra ]]; then
  (cd "$HERE/../.." && "${BILLSTREAM_PYTHON:-.venv/bin/python}" -m deploy.local.mailbox start)
  "$HERE/services.sh" start
  "$HERE/nginx.sh" start
fi
