#!/usr/bin/env bash
# `make run`: embedded services (unless URLs are given), migrations, demo data, then the
# Procfile under honcho. Ctrl-C stops the processes and the embedded services this run started.
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
    echo "stopping embedded services..."
    $PY deploy/embedded.py down
  fi
}
trap cleanup EXIT
set -a; [ -f var/run/services.env ] && source var/run/services.env; set +a
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.dev}
export PORT=${PORT:-8000}
make -s assets
$PY manage.py migrate --noinput
$PY manage.py load_demo
echo
echo "Portal:    http://localhost:${PORT}/"
echo "Admin:     http://localhost:${PORT}/admin/"
echo "API docs:  http://localhost:${PORT}/api/docs/"
echo "Websocket: ws://localhost:${PORT}/ws/live/"
echo
.venv/bin/honcho start -f Procfile
