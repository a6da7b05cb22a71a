"""Oversized messages (``MQTT_MAX_MESSAGE_BYTES``, Mosquitto's ``message_size_limit``) are
dropped without touching anyone else; packets far beyond it cost their sender its connection."""

from __future__ import annotations

from django.conf import settings

from apps.devices.broker import PACKET_HEADROOM
from tests.broker_support import Received

from .conftest import Fleet


def test_a_message_over_the_size_limit_is_dropped_and_its_sender_stays_connected(
    fleet: Fleet,
) -> None:
    limit = settings.MQTT_MAX_MESSAGE_BYTES
    watcher = fleet.platform()
    for who in ("a", "b"):
        assert watcher.subscribe(fleet.topic(who, "telemetry")) == [1]
    a, b = fleet.device("a"), fleet.device("b")

    a.publish(fleet.topic("a", "telemetry"), b"x" * limit)  # at the limit: delivered
    a.publish(fleet.topic("a", "telemetry"), b"y" * (limit + 1))  # acknowledged (3.1.1), dropped
    b.publish(fleet.topic("b", "telemetry"), b"b-ok")
    a.publish(fleet.topic("a", "telemetry"), b"control")

    received = watcher.until(fleet.topic("a", "telemetry"), b"control")
    assert [(m.topic, len(m.payload)) for m in received] == [
        (fleet.topic("a", "telemetry"), limit),
        (fleet.topic("b", "telemetry"), 4),
        (fleet.topic("a", "telemetry"), 7),
    ]
    assert (a.connected, b.connected) == (True, True)


def test_a_packet_beyond_the_packet_limit_disconnects_only_its_sender(fleet: Fleet) -> None:
    watcher = fleet.platform()
    assert watcher.subscribe(fleet.topic("b", "telemetry")) == [1]
    assert watcher.subscribe(fleet.topic("a", "telemetry")) == [1]
    a, b = fleet.device("a"), fleet.device("b")

    oversized = b"z" * (settings.MQTT_MAX_MESSAGE_BYTES + PACKET_HEADROOM + 1)
    a.client.publish(fleet.topic("a", "telemetry"), oversized, qos=1)

    assert a.wait_gone()
    b.publish(fleet.topic("b", "telemetry"), b"b-ok")
    telemetry = fleet.topic("b", "telemetry")
    assert watcher.until(telemetry, b"b-ok") == [Received(telemetry, b"b-ok", 1, False)]
    assert b.connected
    back = fleet.device("a")  # the sender may come back with sensible messages
    back.publish(fleet.topic("a", "telemetry"), b"back")
    telemetry = fleet.topic("a", "telemetry")
    assert watcher.until(telemetry, b"back") == [Received(telemetry, b"back", 1, False)]
