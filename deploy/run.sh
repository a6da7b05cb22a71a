#!/usr/bin/env bash
# `make run`: embedded services (unless URLs are given), migrations, demo data, then the
# Procfile under honcho. Ctrl-C stops the processes and the embedded services this run started.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/services.sh
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.dev}
export PORT=${PORT:-8000}
make -s assets
$PY manage.py migrate --noinput
$PY manage.py load_demo
$PY manage.py load_fleet_demo
echo
echo "Portal:    http://localhost:${PORT}/"
echo "Admin:     http://localhost:${PORT}/admin/"
echo "API docs:  http://localhost:${PORT}/api/docs/"
echo "Websocket: ws://localhost:${PORT}/ws/live/"
echo
.venv/bin/honcho start -f Procfile
