"""The platform's own listener and account: it reads every device's subtree (shared
subscriptions spread the load over ingest workers), writes configuration, commands and update
jobs, and exists on no device listener, as devices exist on no platform listener."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.broker_support import ConnectionRefused, MqttSession, Received, connect

from .conftest import DEVICE_RECEIVES, Fleet


def test_shared_subscribers_share_the_telemetry_each_message_once(fleet: Fleet) -> None:
    workers = [fleet.platform(), fleet.platform()]
    for worker in workers:
        assert worker.subscribe("$share/ingest/devices/+/telemetry") == [1]
    a, t = fleet.device("a"), fleet.device("t")
    sent: list[tuple[str, bytes]] = []
    for number in range(10):
        for who, session in (("a", a), ("t", t)):
            topic, payload = fleet.topic(who, "telemetry"), f"{who}-{number}".encode()
            session.publish(topic, payload)
            sent.append((topic, payload))

    received = drain(workers, len(sent))
    assert sorted((m.topic, m.payload) for batch in received for m in batch) == sorted(sent)
    assert [len(batch) for batch in received] == [10, 10]  # Mosquitto alternates the group


def test_the_platform_sends_configuration_commands_and_update_jobs(fleet: Fleet) -> None:
    platform = fleet.platform()
    platform.publish(fleet.topic("a", "config/desired"), b'{"version":1}', retain=True)
    platform.publish(fleet.topic("a", "ota/job"), b'{"job":"j-1"}', retain=True)
    device = fleet.device("a")
    for suffix in DEVICE_RECEIVES:
        assert device.subscribe(fleet.topic("a", suffix.replace("c-1", "+"))) == [1]

    platform.publish(fleet.topic("a", "commands/c-1"), b'{"name":"reboot"}')

    command = fleet.topic("a", "commands/c-1")
    assert device.until(command, b'{"name":"reboot"}') == [
        Received(fleet.topic("a", "config/desired"), b'{"version":1}', 1, True),
        Received(fleet.topic("a", "ota/job"), b'{"job":"j-1"}', 1, True),
        Received(command, b'{"name":"reboot"}', 1, False),
    ]


def test_the_platform_account_is_limited_to_device_topics_and_broker_metrics(
    fleet: Fleet,
) -> None:
    platform = fleet.platform()
    assert platform.subscribe("$SYS/broker/version") == [1]
    assert platform.until("$SYS/broker/version", b"mosquitto version 2.0.11") == [
        Received("$SYS/broker/version", b"mosquitto version 2.0.11", 1, True)
    ]
    assert platform.subscribe("fleetops/#") == [1]  # granted, but the ACL has no such topic
    assert platform.subscribe(fleet.topic("a", "events")) == [1]
    platform.publish("fleetops/elsewhere", b"not-allowed")
    platform.publish(fleet.topic("a", "events"), b"control")
    events = fleet.topic("a", "events")
    assert platform.until(events, b"control") == [Received(events, b"control", 1, False)]


def test_each_account_works_only_on_its_own_listener(fleet: Fleet) -> None:
    broker = fleet.broker
    account: dict[str, Any] = {
        "username": broker.platform_username,
        "password": broker.platform_password,
    }
    with pytest.raises(ConnectionRefused, match="Not authorized"):
        connect(broker, port=broker.token_port, client_id="platform", **account)
    with pytest.raises(ConnectionRefused):
        connect(broker, port=broker.device_port, client_id="platform", **account)
    with pytest.raises(ConnectionRefused, match="Not authorized"):
        connect(
            broker,
            port=broker.platform_port,
            tls=False,
            client_id=str(fleet.t.pk),
            username=str(fleet.t.pk),
            password=fleet.t_token,
        )
    with pytest.raises(ConnectionRefused, match="Not authorized"):
        connect(broker, port=broker.platform_port, tls=False, client_id="anonymous")


def drain(sessions: list[MqttSession], total: int) -> list[list[Received]]:
    """What each session received until ``total`` messages arrived altogether."""
    batches: list[list[Received]] = [[] for _ in sessions]
    deadline = time.monotonic() + 10
    while sum(map(len, batches)) < total and time.monotonic() < deadline:
        for batch, session in zip(batches, sessions, strict=True):
            batch.extend(session.collect(0.05))
    return batches
