"""Device isolation over MQTT, on a real Mosquitto with the platform's generated configuration
and real TLS: a device reads and writes only ``devices/<its id>/...``, whatever it subscribes to,
and cannot take over another device's session. A and B use certificates, T a token.

Mosquitto acknowledges a forbidden publish (MQTT 3.1.1 has no refusal code). A subscription
outside the device's own subtree is refused in the SUBACK; one inside it is granted, and each
delivery is filtered. So every test proves "nothing delivered" with a control message sent
after the forbidden ones: a broker delivers one session's messages
in order, so when the control message is the first thing that arrives, nothing came before it."""

from __future__ import annotations

import pytest

from tests.broker_support import Received

from .conftest import DEVICE_PUBLISHES, DEVICE_RECEIVES, Fleet

GRANTED_QOS1 = [1]
SUBSCRIBE_REFUSED = [128]  # MQTT 3.1.1 SUBACK failure (0x80)


@pytest.mark.parametrize("intruder", ["b", "t"])
def test_a_device_cannot_publish_into_another_devices_topics(fleet: Fleet, intruder: str) -> None:
    watcher = fleet.platform()
    assert watcher.subscribe(f"devices/{fleet.a.pk}/#") == GRANTED_QOS1
    assert watcher.subscribe(fleet.topic(intruder, "telemetry")) == GRANTED_QOS1
    victim = fleet.device("a")
    for suffix in DEVICE_RECEIVES:
        assert victim.subscribe(fleet.topic("a", suffix)) == GRANTED_QOS1
    sneaky = fleet.device(intruder)

    for suffix in (*DEVICE_PUBLISHES, *DEVICE_RECEIVES, "anything/else"):
        sneaky.publish(fleet.topic("a", suffix), b"forged")  # acknowledged, then dropped
    sneaky.publish(fleet.topic("a", "status"), b"forged", retain=True)
    sneaky.publish(fleet.topic(intruder, "telemetry"), b"control")

    control = fleet.topic(intruder, "telemetry")
    assert watcher.until(control, b"control") == [Received(control, b"control", 1, False)]
    watcher.publish(fleet.topic("a", "commands/c-1"), b"control")
    command = fleet.topic("a", "commands/c-1")
    assert victim.until(command, b"control") == [Received(command, b"control", 1, False)]
    # Nor was a forged retained status stored for A: a new subscriber finds none.
    late = fleet.platform()
    status = fleet.topic("a", "status")
    assert late.subscribe(status) == GRANTED_QOS1
    late.publish(status, b"control")
    assert late.until(status, b"control") == [Received(status, b"control", 1, False)]


@pytest.mark.parametrize("intruder", ["b", "t"])
def test_a_device_receives_nothing_of_another_devices_topics_wildcards_included(
    fleet: Fleet, intruder: str
) -> None:
    platform = fleet.platform()
    platform.publish(fleet.topic("a", "config/desired"), b"a-config", retain=True)
    platform.publish(fleet.topic("a", "ota/job"), b"a-job", retain=True)
    sneaky = fleet.device(intruder)
    filters = [
        *(fleet.topic("a", suffix) for suffix in (*DEVICE_RECEIVES, *DEVICE_PUBLISHES)),
        f"devices/{fleet.a.pk}/#",
        "devices/+/telemetry",
        "devices/+/config/desired",
        "devices/+/commands/+",
        "devices/#",
        "+/+/+",
        "#",
    ]
    # Every filter reaching outside the intruder's own subtree is refused in its SUBACK (the
    # ACL plugin; docs/device-protocol.md), and reported (test_refusal_reports.py).
    assert [sneaky.subscribe(topic) for topic in filters] == [SUBSCRIBE_REFUSED] * len(filters)
    # its own desired configuration carries the control message below
    assert sneaky.subscribe(fleet.topic(intruder, "config/desired")) == GRANTED_QOS1

    victim = fleet.device("a")
    victim.publish(fleet.topic("a", "telemetry"), b"a-telemetry")
    victim.publish(fleet.topic("a", "status"), b'{"state":"online"}', retain=True)
    platform.publish(fleet.topic("a", "commands/c-1"), b"a-command")
    platform.publish(fleet.topic(intruder, "config/desired"), b"control")

    control = fleet.topic(intruder, "config/desired")
    received = sneaky.until(control, b"control")
    assert received == [Received(control, b"control", 1, False)]


@pytest.mark.parametrize("intruder", ["b", "t"])
def test_connecting_with_another_devices_client_id_does_not_take_it_over(
    fleet: Fleet, intruder: str
) -> None:
    platform = fleet.platform()
    victim = fleet.device("a")
    assert victim.subscribe(fleet.topic("a", "commands/+")) == GRANTED_QOS1

    # The broker replaces the requested client id with the identity (certificate CN or token
    # username), so this is the intruder's own session, not A's.
    sneaky = fleet.device(intruder, client_id=str(fleet.a.pk))
    assert sneaky.subscribe(fleet.topic(intruder, "commands/+")) == GRANTED_QOS1
    platform.publish(fleet.topic("a", "commands/c-1"), b"for-a")
    platform.publish(fleet.topic(intruder, "commands/c-1"), b"for-intruder")

    for_a, for_intruder = fleet.topic("a", "commands/c-1"), fleet.topic(intruder, "commands/c-1")
    assert victim.until(for_a, b"for-a") == [Received(for_a, b"for-a", 1, False)]
    assert sneaky.until(for_intruder, b"for-intruder") == [
        Received(for_intruder, b"for-intruder", 1, False)
    ]
    assert (victim.connected, sneaky.connected) == (True, True)


def test_each_device_reads_and_writes_exactly_its_own_topic_table(fleet: Fleet) -> None:
    platform = fleet.platform()
    assert platform.subscribe(f"devices/{fleet.a.pk}/#") == GRANTED_QOS1
    device = fleet.device("a")
    assert device.subscribe(f"devices/{fleet.a.pk}/#") == GRANTED_QOS1

    for suffix in (*DEVICE_PUBLISHES, *DEVICE_RECEIVES):
        device.publish(fleet.topic("a", suffix), suffix.encode())
    device.publish(fleet.topic("a", "done"), b"control")  # not in the table: dropped
    platform.publish(fleet.topic("a", "events"), b"control")

    events = fleet.topic("a", "events")
    assert [(m.topic, m.payload) for m in platform.until(events, b"control")] == [
        *((fleet.topic("a", suffix), suffix.encode()) for suffix in DEVICE_PUBLISHES),
        (events, b"control"),
    ]
    for suffix in DEVICE_RECEIVES:
        platform.publish(fleet.topic("a", suffix), b"from-platform")
    platform.publish(fleet.topic("a", "ota/job"), b"control")
    job = fleet.topic("a", "ota/job")
    assert [(m.topic, m.payload) for m in device.until(job, b"control")] == [
        *((fleet.topic("a", suffix), b"from-platform") for suffix in DEVICE_RECEIVES),
        (job, b"control"),
    ]
