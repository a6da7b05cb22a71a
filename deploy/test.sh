#!/usr/bin/env bash
# `make test`: the same set-up as `make run`, then lint and the whole suite against real
# PostgreSQL, Redis and Mosquitto. Stops the embedded services it started.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
started_services=0
if [ ! -f var/run/services.env ] || ! $PY deploy/embedded.py status | grep -q running; then
  started_services=1
fi
$PY deploy/embedded.py up
cleanup() {
  if [ "$started_services" = 1 ]; then
    $PY deploy/embedded.py down
  fi
}
trap cleanup EXIT
make -s lint
make -s assets
bash deploy/ensure-browser.sh
.venv/bin/pytest "$@"
