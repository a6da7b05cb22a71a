"""End to end with the real pieces: a configuration change request, the downlink publisher,
Mosquitto (retained ``config/desired``), the reference agent (a separate process) applying it
and reporting on ``config/reported``, and ``manage.py ingest`` routing the report to the
configuration handler: the device ends in sync, then a newer version does too."""

from __future__ import annotations

import signal
from urllib.parse import quote

import pytest

from apps.configuration.models import DeviceConfigurationState
from apps.devices import downlinks
from tests.agent.support import enrolled_state, start_agent, wait_until
from tests.broker_support import MqttBroker
from tests.telemetry.ingest_support import Workers

from .support import make_device, make_version, run, set_spec

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def status_of(device) -> tuple[str, int, int | None]:
    state = DeviceConfigurationState.objects.get(device=device)
    return state.status, state.desired_version, state.reported_version


def test_the_agent_applies_the_retained_configuration_and_ends_in_sync(
    tree, settings, mqtt_broker: MqttBroker, tmp_path
):
    user, password = quote(mqtt_broker.platform_username), quote(mqtt_broker.platform_password)
    settings.MQTT_URL = f"mqtt://{user}:{password}@127.0.0.1:{mqtt_broker.platform_port}"
    device = make_device(make_version(tree["acme"]), tree["acme"])
    state = enrolled_state(device, tmp_path / "device", mqtt_broker)
    mqtt_broker.sync()
    workers = Workers(mqtt_broker, tmp_path)
    workers.start("cfg")
    run(tree["acme"], set_spec("device", device.pk, values={"brightness": 10}))
    assert downlinks.publish_pending() == 1  # retained before the device ever connects
    agent = start_agent(
        state, "--telemetry-interval", "0", "--heartbeat-interval", "3600", "--backoff-cap", "1"
    )
    try:
        wait_until(lambda: status_of(device) == ("in_sync", 1, 1), timeout=30, what="v1 in sync")
        run(tree["acme"], set_spec("device", device.pk, values={"brightness": 20}))
        assert downlinks.publish_pending() == 1
        wait_until(lambda: status_of(device) == ("in_sync", 2, 2), timeout=30, what="v2 in sync")
    finally:
        agent.stop(signal.SIGKILL)
        workers.close()
    applied = (state.path / "configuration" / "applied.json").read_text()
    assert '"brightness": 20' in applied
