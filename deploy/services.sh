# Sourced by run.sh and test.sh: start the embedded services (unless URLs are given) and stop,
# on exit, the ones this script started; then export their URLs. The embedded Mosquitto needs
# the database's root CA, so `embedded.py up` migrates and runs `manage.py broker_config` first.
PY=.venv/bin/python
started_services=0
if [ ! -f var/run/services.env ] || ! $PY deploy/embedded.py status | grep -q running; then
  started_services=1
fi
$PY deploy/embedded.py up
stop_started_services() {
  if [ "$started_services" = 1 ]; then
    echo "stopping embedded services..."
    $PY deploy/embedded.py down
  fi
}
trap stop_started_services EXIT
set -a
# shellcheck disable=SC1091
[ -f var/run/services.env ] && source var/run/services.env
set +a
