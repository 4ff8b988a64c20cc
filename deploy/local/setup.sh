#!/usr/bin/env bash
# Installs what the project needs and is missing: OS packages (PostgreSQL, nginx, Java, Maven),
# a virtualenv with the Python packages, and the Kafka jars. Fast when everything is there.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$BILLSTREAM_ROOT"

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v curl >/dev/null || missing+=(curl)
command -v chromium >/dev/null || [[ -x /usr/bin/chromium ]] || missing+=(chromium)  # hosted-page browser test
dpkg -s libpango-1.0-0 libpangoft2-1.0-0 >/dev/null 2>&1 || missing+=(libpango-1.0-0 libpangoft2-1.0-0)  # PDF rendering
python3 -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
  log "installing OS packages: ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${BILLSTREAM_PYTHON_BIN:-python3}
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [[ ! -f $stamp ]]; then
  log "installing Python packages into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[dev]"
  rm -f .venv/.installed-* && touch "$stamp"
fi

"$(dirname "$0")/kafka.sh" fetch
log "setup complete"
