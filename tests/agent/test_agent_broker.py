"""The reference agent against the real broker (TLS, client certificate, pattern ACL)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from apps.devices.models import Device
from tests.broker_support import MqttBroker, MqttSession, Received, connect_platform
from tests.devices.registry_support import make_device, make_version
from tests.factories import make_organization

from .support import (
    drain,
    enrolled_state,
    outbox_files,
    start_agent,
    telemetry_ids,
    wait_until,
)

pytestmark = pytest.mark.slow

SAMPLES = 600


@pytest.fixture
def device(db: None) -> Device:
    organization = make_organization("Acme")
    return make_device(organization, make_version(organization), "SN-AGENT-1", state="active")


class Inbox:
    """The platform account's persistent session (QoS 1), reconnectable after a restart."""

    def __init__(self, broker: MqttBroker, device: Device) -> None:
        self.broker = broker
        self.client_id = f"ingest-{device.pk}"
        self.received: list[Received] = []
        self.session = self._connect()
        self.session.subscribe(f"devices/{device.pk}/telemetry", qos=1)
        self.session.subscribe(f"devices/{device.pk}/status", qos=1)

    def _connect(self) -> MqttSession:
        return connect_platform(self.broker, client_id=self.client_id, clean=False)

    def reconnect(self) -> None:
        self.poll()
        self.session.close()
        self.session = self._connect()

    def poll(self) -> list[Received]:
        self.received.extend(drain(self.session))
        return self.received

    def telemetry(self) -> list[tuple[int, int]]:
        return telemetry_ids(self.poll())

    def statuses(self) -> list[dict[str, str]]:
        return [json.loads(m.payload) for m in self.poll() if m.topic.endswith("/status")]

    def close(self) -> None:
        self.session.close()


def test_the_agents_outbox_loses_nothing_across_a_broker_restart(
    device: Device, mqtt_broker: MqttBroker, tmp_path: Path
) -> None:
    state = enrolled_state(device, tmp_path / "device", mqtt_broker)
    mqtt_broker.sync()
    inbox = Inbox(mqtt_broker, device)
    agent = start_agent(
        state,
        *("--telemetry-interval", "0.01", "--samples", str(SAMPLES)),
        *("--heartbeat-interval", "3600", "--backoff-cap", "1"),
    )
    try:
        wait_until(lambda: len(inbox.telemetry()) >= 150, timeout=30, what="150 samples")
        mqtt_broker.restart()  # mid-stream: the agent is still sampling
        before_restart = set(inbox.telemetry())
        inbox.reconnect()
        wait_until(
            lambda: len(set(inbox.telemetry())) >= SAMPLES and not outbox_files(state),
            timeout=60,
            what=f"all {SAMPLES} samples and an empty outbox",
        )
        exit_code = agent.stop(signal.SIGTERM)
        wait_until(lambda: inbox.statuses()[-1] == {"state": "offline"}, timeout=10, what="offline")
    finally:
        agent.stop(signal.SIGKILL)
        inbox.close()

    assert 150 <= len(before_restart) < SAMPLES
    assert set(inbox.telemetry()) == {(1, seq) for seq in range(1, SAMPLES + 1)}
    assert outbox_files(state) == []
    assert exit_code == 0
    # one session before the restart and one after, each announced online; offline at the end
    assert inbox.statuses().count({"state": "online"}) >= 2
    assert "disconnected" in agent.log()


def test_an_agent_killed_while_the_broker_is_down_sends_its_outbox_at_next_boot(
    device: Device, mqtt_broker: MqttBroker, tmp_path: Path
) -> None:
    state = enrolled_state(device, tmp_path / "device", mqtt_broker)
    mqtt_broker.sync()
    inbox = Inbox(mqtt_broker, device)
    mqtt_broker.stop()
    try:
        first = start_agent(state, "--telemetry-interval", "0.01", "--backoff-cap", "1")
        wait_until(lambda: len(outbox_files(state)) >= 100, timeout=30, what="a full outbox")
        first.stop(signal.SIGKILL)  # a crash: no goodbye, no flush
        queued = [
            json.loads(json.loads(path.read_text())["payload"]) for path in outbox_files(state)
        ]
    finally:
        mqtt_broker.start()
    inbox.reconnect()
    second = start_agent(state, "--telemetry-interval", "0.01", "--samples", "50")
    try:
        wait_until(
            lambda: (
                {(2, seq) for seq in range(1, 51)} <= set(inbox.telemetry())
                and not outbox_files(state)
            ),
            timeout=60,
            what="the second boot's samples and an empty outbox",
        )
    finally:
        second.stop()
        inbox.close()

    first_boot = sorted({seq for boot, seq in inbox.telemetry() if boot == 1})
    assert [(body["boot"], body["seq"]) for body in queued] == [(1, n) for n in first_boot]
    assert first_boot == list(range(1, len(queued) + 1))
    assert {seq for boot, seq in inbox.telemetry() if boot == 2} == set(range(1, 51))
    assert (state.path / "boot").read_text() == "2\n"
