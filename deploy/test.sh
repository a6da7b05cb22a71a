#!/usr/bin/env bash
# `make test`: the same set-up as `make run`, then lint and the whole suite against real
# PostgreSQL, Redis and Mosquitto. Stops the embedded services it started.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/services.sh
make -s lint
make -s assets
bash deploy/ensure-browser.sh
.venv/bin/pytest "$@"
