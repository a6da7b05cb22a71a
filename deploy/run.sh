#!/usr/bin/env bash
# `make run`: embedded services (unless URLs are given; the embedded Mosquitto runs the
# platform's generated broker config, so `embedded.py up` migrates first), migrations, demo data,
# then the Procfile under honcho (broker-sync keeps the broker's CRL and tokens current).
# Ctrl-C stops the processes and the embedded services this run started.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/services.sh
export DJANGO_SETTINGS_MODULE=${DJANGO_SETTINGS_MODULE:-config.settings.dev}
export PORT=${PORT:-8000}
make -s assets
$PY manage.py migrate --noinput
$PY manage.py load_demo
$PY manage.py load_fleet_demo
$PY manage.py load_connectivity_demo --token-file var/demo/claim-token
$PY manage.py load_telemetry_demo
$PY manage.py load_changes_demo
# The platform's processes plus a simulated fleet that enrolls itself zero-touch with the demo's
# claim token (the reference agent, agent/), so the portal shows devices arriving and going online,
# streams telemetry into live charts, and loses one device's power every two minutes (an alert,
# and a notification in the bell).
DEMO_DEVICES=${DEMO_DEVICES:-25}
{
  cat Procfile
  echo "simulator: .venv/bin/python -m agent simulate --count ${DEMO_DEVICES}" \
    "--url http://127.0.0.1:${PORT} --claim-token \"\$(cat var/demo/claim-token)\"" \
    "--state-dir var/demo/fleet --telemetry-interval 10 --outage-every 120 --outage-seconds 90"
} > var/run/Procfile.demo
echo
echo "Portal:    http://localhost:${PORT}/"
echo "Admin:     http://localhost:${PORT}/admin/"
echo "API docs:  http://localhost:${PORT}/api/docs/"
echo "Websocket: ws://localhost:${PORT}/ws/live/"
if [ -n "${MQTT_DEVICE_PORT:-}" ]; then
  echo "MQTT:      devices mqtts://127.0.0.1:${MQTT_DEVICE_PORT} (client certificate)," \
    "mqtts://127.0.0.1:${MQTT_TOKEN_PORT:-} (token); broker files in ${MQTT_BROKER_DIR:-}"
fi
echo
echo "Simulated fleet: ${DEMO_DEVICES} devices enrolling into Northwind Hospitals (DEMO_DEVICES=N);"
echo "one loses power every 2 minutes: see Alerts and the bell as owner@northwind.example"
echo
.venv/bin/honcho start -f var/run/Procfile.demo -d .
