"""The desired configuration reaches a real Mosquitto as a retained message: a device that
subscribes later still gets the newest version, and only that one."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from apps.configuration.documents import canonical_checksum
from apps.devices import downlinks
from tests.broker_support import MqttBroker, connect_token, create_token

from .support import make_device, make_version, run, set_spec

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker(settings, mqtt_broker: MqttBroker) -> MqttBroker:
    user, password = quote(mqtt_broker.platform_username), quote(mqtt_broker.platform_password)
    settings.MQTT_URL = f"mqtt://{user}:{password}@127.0.0.1:{mqtt_broker.platform_port}"
    return mqtt_broker


def test_a_device_subscribing_later_gets_the_newest_desired_configuration(tree, broker):
    version = make_version(tree["acme"])
    device = make_device(version, tree["acme"])
    token = create_token(device)
    broker.sync()  # the broker learns the token (broker_sync --watch in production)
    run(tree["acme"], set_spec("device", device.pk, values={"brightness": 10}))
    assert downlinks.publish_pending() == 1
    run(tree["acme"], set_spec("device", device.pk, values={"brightness": 20}))
    assert downlinks.publish_pending() == 1
    session = connect_token(broker, str(device.pk), token)
    try:
        session.subscribe(f"devices/{device.pk}/config/desired")
        (received,) = session.expect(1)
        document = {"brightness": 20, "locale": "en", "network": {"apn": "internet"}}
        assert (received.retain, received.qos) == (True, 1)
        assert json.loads(received.payload) == {
            "version": 2,
            "checksum": canonical_checksum(document),
            "configuration": document,
        }
        assert session.collect(0.5) == []
    finally:
        session.close()
