"""``manage.py connectivity`` end to end: a real Mosquitto (the ``mqtt_broker`` session fixture,
configured as in production), the worker as a separate process on the test database, and
devices' status messages published as devices publish them.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from paho.mqtt.enums import MQTTProtocolVersion

from apps.core.models import AuditLog, Event
from apps.devices.choices import DeviceState
from apps.devices.models import BrokerRefusal, Device
from tests.broker_support import (
    MqttBroker,
    MqttSession,
    connect_platform,
    connect_token,
    create_token,
)

from .registry_support import make_device, make_version

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 15.0
ONLINE, OFFLINE = b'{"state":"online"}', b'{"state":"offline"}'
TALLY = re.compile(
    r"status messages: (?P<received>\d+) received, (?P<changed>\d+) changed, "
    r"(?P<ignored>\d+) ignored, (?P<malformed>\d+) malformed"
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@dataclass
class RunningWorker:
    process: subprocess.Popen[bytes]
    log: Path
    client_id: str

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, line: str, count: int = 1) -> None:
        deadline = time.monotonic() + TIMEOUT
        while self.text().count(line) < count:
            assert self.process.poll() is None, f"the worker exited:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {line!r} in the worker's log:\n{self.text()}"
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=TIMEOUT)


class Publisher:
    """The platform account publishing on devices' behalf (its listener allows it)."""

    def __init__(self, session: MqttSession) -> None:
        self.session = session
        self.retained: set[str] = set()

    def status(self, device: Device, payload: bytes) -> None:
        """What a device sends: retained, QoS 1."""
        topic = f"devices/{device.pk}/status"
        self.session.publish(topic, payload, qos=1, retain=True)
        self.retained.add(topic)

    def clear(self) -> None:
        """The broker outlives the test: leave no retained message for the next one."""
        for topic in self.retained:
            self.session.publish(topic, b"", retain=True)


@pytest.fixture
def platform(mqtt_broker: MqttBroker) -> Iterator[Publisher]:
    publisher = Publisher(connect_platform(mqtt_broker))
    yield publisher
    publisher.clear()
    publisher.session.close()


@pytest.fixture
def start_worker(mqtt_broker: MqttBroker, tmp_path: Path) -> Iterator[Callable[..., RunningWorker]]:
    """Start ``manage.py connectivity`` against the test database and the platform listener;
    each test's workers end their broker sessions afterwards (the broker outlives the test)."""
    settings = connection.settings_dict
    user, password = quote(mqtt_broker.platform_username), quote(mqtt_broker.platform_password)
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings.test",
        DATABASE_URL=(
            f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/"
            f"{settings['NAME']}"
        ),
        MQTT_URL=f"mqtt://{user}:{password}@{mqtt_broker.host}:{mqtt_broker.platform_port}",
    )
    started: list[RunningWorker] = []

    def start(suffix: str | None = None, *options: str) -> RunningWorker:
        suffix = suffix or secrets.token_hex(4)
        log = tmp_path / f"worker-{suffix}-{len(started)}.log"
        process = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/python"),
                "manage.py",
                "connectivity",
                "--suffix",
                suffix,
                "--batch-ms",
                "50",
                *options,
            ],
            cwd=ROOT,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        worker = RunningWorker(process, log, f"fleetops-connectivity-{suffix}")
        started.append(worker)
        worker.wait_for("subscribed to $share/connectivity/devices/+/status")
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()
    for client_id in {worker.client_id for worker in started}:
        # A clean start with no session expiry replaces the worker's session and ends it at
        # the disconnect: no later test's messages are queued for a worker that is gone.
        connect_platform(
            mqtt_broker, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5, clean=True
        ).close()
    _wait_for_other_sessions_to_end()


def _wait_for_other_sessions_to_end() -> None:
    """The worker's database backend ends a moment after the process; the test database can
    only be flushed and dropped once it has."""
    deadline = time.monotonic() + 10
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.1)


@pytest.fixture
def devices(tree) -> list[Device]:
    version = make_version(tree["acme"])
    return [
        make_device(tree["acme"], version, f"SN-{index}", state=DeviceState.ACTIVE)
        for index in range(3)
    ]


def wait_for(check: Callable[[], Any], expected: Any) -> None:
    deadline = time.monotonic() + TIMEOUT
    while (found := check()) != expected:
        assert time.monotonic() < deadline, f"{found!r} != {expected!r}"
        time.sleep(0.05)


def final_tally(worker: RunningWorker) -> dict[str, int]:
    """The counts of the worker's last report (it reports on its way out)."""
    *_, last = TALLY.finditer(worker.text())
    return {name: int(value) for name, value in last.groupdict().items()}


def connectivity(device: Device) -> str:
    return Device.objects.values_list("connectivity", flat=True).get(pk=device.pk)


def test_a_device_that_connects_and_dies_goes_online_then_offline(
    mqtt_broker, platform, devices, start_worker
):
    device = devices[0]
    token = create_token(device)
    mqtt_broker.sync()
    start_worker()
    topic = f"devices/{device.pk}/status"
    platform.retained.add(topic)
    session = connect_token(mqtt_broker, str(device.pk), token, will=(topic, OFFLINE, 1, True))
    session.publish(topic, ONLINE, qos=1, retain=True)
    wait_for(lambda: connectivity(device), "online")
    seen = Device.objects.get(pk=device.pk).last_seen_at
    assert seen is not None

    # Gone without a DISCONNECT (power cut, network loss): the broker publishes the will.
    raw = session.client.socket()
    assert isinstance(raw, socket.socket)
    raw.shutdown(socket.SHUT_RDWR)
    session.client.loop_stop()
    wait_for(lambda: connectivity(device), "offline")

    assert Device.objects.get(pk=device.pk).last_seen_at == seen
    assert list(
        Event.objects.filter(subject_id=str(device.pk))
        .order_by("created_at")
        .values_list("type", "payload__from", "payload__to")
    ) == [("device.online", "unknown", "online"), ("device.offline", "online", "offline")]


def test_a_batch_whose_write_fails_is_not_acknowledged_and_comes_back(
    platform, devices, start_worker
):
    device = devices[0]
    with connection.cursor() as cursor:
        # The first change of a device's connectivity fails inside PostgreSQL; the sequence
        # counts the attempts and, unlike the failed transaction, is not rolled back.
        cursor.execute(
            """
            CREATE SEQUENCE test_connectivity_fault;
            CREATE FUNCTION test_connectivity_fault() RETURNS trigger AS $$
            BEGIN
                IF nextval('test_connectivity_fault') = 1 THEN
                    RAISE EXCEPTION 'injected failure';
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER test_connectivity_fault BEFORE UPDATE OF connectivity
                ON devices_device FOR EACH ROW EXECUTE FUNCTION test_connectivity_fault();
            """
        )
    try:
        worker = start_worker()
        platform.status(device, ONLINE)
        wait_for(lambda: connectivity(device), "online")
        with connection.cursor() as cursor:
            cursor.execute("SELECT last_value FROM test_connectivity_fault")
            attempts = cursor.fetchone()[0]
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER test_connectivity_fault ON devices_device;"
                "DROP FUNCTION test_connectivity_fault(); DROP SEQUENCE test_connectivity_fault;"
            )

    assert attempts == 2  # failed once, applied once
    assert Event.objects.filter(type="device.online", subject_id=str(device.pk)).count() == 1
    assert worker.stop() == 0
    log = worker.text()
    assert "could not apply 1 status message(s)" in log
    assert "reconnecting: the batch was not applied" in log
    assert "connected (session present: True)" in log  # the redelivery came from the session
    assert "status messages: 1 received, 1 changed, 0 ignored, 0 malformed" in log


def test_messages_sent_while_the_worker_is_stopped_wait_in_its_session(
    platform, devices, start_worker
):
    first, second = devices[0], devices[1]
    worker = start_worker("persistent")
    platform.status(first, ONLINE)
    wait_for(lambda: connectivity(first), "online")
    assert worker.stop() == 0
    assert "status messages: 1 received, 1 changed, 0 ignored, 0 malformed" in worker.text()

    platform.status(first, OFFLINE)
    platform.status(second, ONLINE)
    restarted = start_worker("persistent")
    wait_for(lambda: (connectivity(first), connectivity(second)), ("offline", "online"))

    assert restarted.stop() == 0
    assert "connected (session present: True)" in restarted.text()


def test_workers_share_the_devices_and_skip_what_is_malformed(platform, tree, start_worker):
    version = make_version(tree["acme"])
    many = [
        make_device(tree["acme"], version, f"SN-{index:02}", state=DeviceState.ACTIVE)
        for index in range(20)
    ]
    workers = [start_worker(), start_worker()]
    platform.session.publish("devices/not-a-device/status", ONLINE)
    platform.session.publish(f"devices/{many[0].pk}/status", b"garbage")
    for device in many:
        platform.status(device, ONLINE)
    wait_for(lambda: Device.objects.filter(connectivity="online").count(), 20)

    for worker in workers:
        assert worker.stop() == 0
    tallies = [final_tally(worker) for worker in workers]
    changed = [tally["changed"] for tally in tallies]
    malformed = [tally["malformed"] for tally in tallies]
    assert sum(changed) == 20
    assert min(changed) > 0  # both took part
    assert sum(malformed) == 2
    assert Event.objects.filter(type="device.online").count() == 20


def test_it_reconnects_after_a_broker_restart(mqtt_broker, devices, start_worker):
    device = devices[0]
    worker = start_worker()
    mqtt_broker.restart()
    worker.wait_for("subscribed to $share/connectivity/devices/+/status", count=2)
    platform = Publisher(connect_platform(mqtt_broker))
    try:
        platform.status(device, ONLINE)
        wait_for(lambda: connectivity(device), "online")
    finally:
        platform.clear()
        platform.session.close()

    assert worker.stop() == 0
    assert "reconnecting: connection lost" in worker.text()
    assert "connected (session present: True)" in worker.text()  # the broker kept it on disk


def test_the_worker_stores_and_audits_what_the_broker_refused(
    mqtt_broker, platform, devices, start_worker
):
    victim, intruder = devices[0], devices[1]
    token = create_token(intruder)
    mqtt_broker.sync()
    worker = start_worker()
    session = connect_token(mqtt_broker, str(intruder.pk), token)
    session.publish(f"devices/{victim.pk}/telemetry", b"sneaky")

    def refused() -> list[tuple[Any, ...]]:
        return list(BrokerRefusal.objects.values_list("device_id", "reason", "count", "topic"))

    wait_for(refused, [(intruder.pk, "acl_publish", 1, f"devices/{victim.pk}/telemetry")])
    audit = AuditLog.objects.filter(action="broker.refused")
    assert list(audit.values_list("actor_device_id", "organization_id", "changes__reason")) == [
        (intruder.pk, intruder.organization_id, "acl_publish")
    ]
    session.close()
    assert worker.stop() == 0
    assert "; 1 refusal(s)" in worker.text()
