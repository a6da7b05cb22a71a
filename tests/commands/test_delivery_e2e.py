"""End to end with the real Mosquitto, the reference agent as a process and an ingest worker:
at-least-once delivery, exactly-once execution across a broker restart and a device
reconnect, offline queueing, and a reboot."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.db import transaction
from django.utils import timezone

from apps.commands import sweeper
from apps.commands.kind import document
from apps.commands.models import Command
from apps.devices.downlinks import Outgoing, enqueue, publish_pending
from tests.agent.support import enrolled_state, start_agent, wait_until
from tests.broker_support import MqttBroker
from tests.telemetry.ingest_support import Workers

from .support import commands_of, make_device, make_version, run

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def platform(settings, mqtt_broker: MqttBroker) -> MqttBroker:
    user, password = quote(mqtt_broker.platform_username), quote(mqtt_broker.platform_password)
    settings.MQTT_URL = f"mqtt://{user}:{password}@127.0.0.1:{mqtt_broker.platform_port}"
    return mqtt_broker


@pytest.fixture
def workers(platform: MqttBroker, tmp_path: Path) -> Iterator[Workers]:
    started = Workers(platform, tmp_path)
    try:
        yield started
    finally:
        started.close()


def status_of(command: Command) -> str:
    command.refresh_from_db()
    return command.status


def test_a_command_runs_once_across_a_broker_restart_and_a_reconnect(
    tree, platform, workers, tmp_path
):
    device = make_device(make_version(tree["acme"]), tree["acme"])
    state = enrolled_state(device, tmp_path / "device", platform)
    platform.sync()
    worker = workers.start("commands")
    agent = start_agent(state, "--telemetry-interval", "0")
    try:
        wait_until(lambda: "connected" in agent.log(), timeout=20, what="the agent to connect")
        first = commands_of(run(tree["acme"], [device], command="ping"))[device.pk]
        assert publish_pending() == 1
        wait_until(lambda: status_of(first) == "succeeded", timeout=20, what="ping to succeed")
        assert first.output["pong"] is True
        assert first.sent_at is not None and first.received_at is not None

        agent.stop()  # offline: the broker keeps its persistent session
        second = commands_of(
            run(tree["acme"], [device], command="set_log_level", arguments={"level": "debug"})
        )[device.pk]
        assert publish_pending() == 1
        assert status_of(second) == "sent"
        # never answered: the retry sends the same id again, queued behind the first copy
        assert sweeper.sweep(now=timezone.now() + timedelta(seconds=31)).retried == 1
        assert publish_pending() == 1
        platform.restart()  # both copies survive in the broker's persistence
        worker.wait_for("session present: True")
        agent = start_agent(state, "--telemetry-interval", "0")
        wait_until(
            lambda: status_of(second) == "succeeded",
            timeout=30,
            what="the 2nd command",
        )
        assert second.output == {"previous": "debug", "level": "debug"}
        time.sleep(1.0)  # room for a second execution, which must not happen
        log = agent.log()
        assert log.count(f"commands: running {second.pk}") == 1
        assert log.count(f"commands: running {first.pk}") == 1  # both processes' log
        second.refresh_from_db()
        assert (second.status, second.attempts) == ("succeeded", 2)
    finally:
        agent.stop()


def test_an_expired_command_is_dropped_by_the_agent_and_recorded_expired(
    tree, platform, workers, tmp_path
):
    device = make_device(make_version(tree["acme"]), tree["acme"])
    state = enrolled_state(device, tmp_path / "device", platform)
    platform.sync()
    workers.start("commands")
    command = commands_of(run(tree["acme"], [device], command="ping"))[device.pk]
    # delivered late: the copy that reaches the device says it expired a second ago
    stale = {**document(command), "expires_at": (timezone.now() - timedelta(seconds=1)).isoformat()}
    with transaction.atomic():
        enqueue(
            [
                Outgoing(
                    device_id=device.pk,
                    organization_id=device.organization_id,
                    topic=f"commands/{command.pk}",
                    payload=json.dumps(stale).encode(),
                    supersede=True,
                )
            ]
        )
    agent = start_agent(state, "--telemetry-interval", "0")
    try:
        wait_until(lambda: "connected" in agent.log(), timeout=20, what="the agent to connect")
        publish_pending()
        wait_until(lambda: status_of(command) == "expired", timeout=20, what="the expiry report")
        assert f"commands: running {command.pk}" not in agent.log()
    finally:
        agent.stop()


def test_reboot_reports_then_reconnects_with_a_new_boot(tree, platform, workers, tmp_path):
    version = make_version(tree["acme"], catalog=[{"name": "reboot", "schema": {"type": "object"}}])
    device = make_device(version, tree["acme"])
    state = enrolled_state(device, tmp_path / "device", platform)
    platform.sync()
    workers.start("commands")
    agent = start_agent(state, "--telemetry-interval", "0")
    try:
        wait_until(lambda: "connected" in agent.log(), timeout=20, what="the agent to connect")
        command = commands_of(run(tree["acme"], [device], command="reboot"))[device.pk]
        publish_pending()
        wait_until(lambda: status_of(command) == "succeeded", timeout=20, what="the reboot")
        assert command.output == {"rebooting": True, "boot": 1}
        wait_until(lambda: "rebooted, boot 2" in agent.log(), timeout=20, what="the new boot")
        wait_until(lambda: agent.log().count("connected, ") == 2, timeout=20, what="reconnect")
        assert (state.path / "boot").read_text().strip() == "2"
    finally:
        agent.stop()
