#!/usr/bin/env bash
# Stops everything up.sh started. Data stays in .local/ (delete it for a clean slate).
set -uo pipefail
HERE="$(dirname "$0")"
"$HERE/nginx.sh" stop
"$HERE/services.sh" stop
(cd "$HERE/../.." && "${BILLSTREAM_PYTHON:-.venv/bin/python}" -m deploy.local.mailbox stop)
"$HERE/kafka.sh" stop
"$HERE/postgres.sh" stop
