"""Running ``manage.py ingest`` in tests: the worker as a separate process against the test
database (or another PostgreSQL) and the session's real Mosquitto, a publisher that sends what
a fleet of devices sends, and what the telemetry table holds afterwards. No tests here.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import paho.mqtt.client as mqtt
import redis
from django.conf import settings
from django.db import connection
from paho.mqtt.enums import MQTTProtocolVersion

from apps.telemetry import ingest_stats
from apps.telemetry.ingest_worker import CLIENT_ID_PREFIX
from tests.broker_support import MqttBroker, connect_platform

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0
SUBSCRIBED = "subscribed to $share/ingest/devices/+/telemetry"
REPORT = re.compile(
    r"ingest: (?P<messages>\d+) messages in (?P<batches>\d+) batches: (?P<stored>\d+) stored, "
    r"(?P<duplicates>\d+) duplicates, (?P<dead_letters>\d+) dead letters; (?P<uploads>\d+) "
    r"uploads; (?P<database_errors>\d+) database errors"
)


def database_url_for_tests() -> str:
    """The URL of the database the tests run on (the worker process opens its own)."""
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@dataclass
class RunningWorker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, line: str, count: int = 1, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while self.text().count(line) < count:
            assert self.process.poll() is None, f"the worker exited:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {line!r} in the worker's log:\n{self.text()}"
            time.sleep(0.05)

    def stop(self) -> int:
        """SIGTERM, and the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=TIMEOUT)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=TIMEOUT)

    def last_report(self) -> dict[str, int]:
        """The counts of the worker's last report line (it reports on its way out)."""
        *_, last = REPORT.finditer(self.text())
        return {name: int(value) for name, value in last.groupdict().items()}


class Workers:
    """Starts ``manage.py ingest`` processes; ``close()`` kills what is left and ends their
    MQTT sessions, so that no later test's messages are queued for a worker that is gone."""

    def __init__(self, broker: MqttBroker, directory: Path) -> None:
        self.broker = broker
        self.directory = directory
        self.started: list[RunningWorker] = []

    def environment(self, database_url: str) -> dict[str, str]:
        user = quote(self.broker.platform_username)
        password = quote(self.broker.platform_password)
        return dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="config.settings.test",
            TEST_DATABASE_NAME=settings.TEST_DATABASE_NAME,
            DATABASE_URL=database_url,
            MQTT_URL=f"mqtt://{user}:{password}@{self.broker.host}:{self.broker.platform_port}",
        )

    def start(
        self, name: str, *options: str, database_url: str | None = None, wait: bool = True
    ) -> RunningWorker:
        log = self.directory / f"ingest-{name}-{len(self.started)}.log"
        process = subprocess.Popen(
            [str(ROOT / ".venv/bin/python"), "manage.py", "ingest", "--name", name, *options],
            cwd=ROOT,
            env=self.environment(database_url or database_url_for_tests()),
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        worker = RunningWorker(name, process, log)
        self.started.append(worker)
        if wait:
            worker.wait_for(SUBSCRIBED)
        return worker

    def close(self) -> None:
        for worker in self.started:
            if worker.process.poll() is None:
                worker.kill()
        for name in {worker.name for worker in self.started}:
            end_session(self.broker, name)
        wait_for_other_sessions_to_end()


def end_session(broker: MqttBroker, name: str) -> None:
    """A clean start with no session expiry replaces the worker's session (and its queue) and
    ends it at the disconnect."""
    connect_platform(
        broker,
        client_id=CLIENT_ID_PREFIX + name,
        protocol=MQTTProtocolVersion.MQTTv5,
        clean=True,
    ).close()


def wait_for_other_sessions_to_end() -> None:
    """A worker's database backend ends a moment after the process; the test database can
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


def clear_telemetry() -> None:
    """The telemetry tables are unmanaged (partitioned, created by SQL), so a transactional
    test's flush leaves their rows behind: start from empty ones."""
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE telemetry_sample, telemetry_device_event")


def clear_worker_stats() -> None:
    """Forget every worker document this test run's key prefix holds in Redis."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    prefix = ingest_stats._prefix()
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)


# --- what devices send ---------------------------------------------------------------------------


def now_iso() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def telemetry(device_id: str, boot: int, seq: int, **metrics: Any) -> tuple[str, bytes]:
    """One telemetry message (topic, payload) as the reference agent sends it."""
    body = {
        "boot": boot,
        "seq": seq,
        "ts": now_iso(),
        "metrics": metrics or {"temperature": 20 + seq % 10, "humidity": 40.5},
    }
    return f"devices/{device_id}/telemetry", orjson.dumps(body)


def fleet_messages(device_ids: list[str], per_device: int, boot: int = 1) -> Iterator[tuple]:
    """``per_device`` telemetry messages of every device, interleaved as a fleet sends them;
    yields (device id, boot, seq)."""
    for seq in range(1, per_device + 1):
        for device_id in device_ids:
            yield device_id, boot, seq


@dataclass
class Publisher:
    """The platform account publishing on the devices' behalf (its listener allows it), QoS 1,
    many messages in flight; ``publish`` returns once the broker acknowledged every one."""

    broker: MqttBroker
    client: mqtt.Client = field(init=False)
    sent: list[tuple[str, int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"fleet-{secrets.token_hex(4)}"
        )
        self.client.username_pw_set(self.broker.platform_username, self.broker.platform_password)
        self.client.max_inflight_messages_set(500)
        self.client.connect(self.broker.host, self.broker.platform_port)
        self.client.loop_start()

    def publish(
        self,
        messages: Iterable[tuple[str, int, int]],
        *,
        rate: float | None = None,
        build: Callable[[str, int, int], tuple[str, bytes]] = telemetry,
    ) -> None:
        started, infos = time.monotonic(), []
        for count, (device_id, boot, seq) in enumerate(messages):
            if rate is not None:
                ahead = started + count / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            topic, payload = build(device_id, boot, seq)
            infos.append(self.client.publish(topic, payload, qos=1))
            self.sent.append((device_id, boot, seq))
        for info in infos:
            info.wait_for_publish(timeout=TIMEOUT)
            assert info.is_published(), "the broker did not acknowledge a message"

    def publish_in_background(self, messages: list[tuple[str, int, int]], rate: float) -> Any:
        thread = threading.Thread(target=self.publish, args=(messages,), kwargs={"rate": rate})
        thread.start()
        return thread

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def stored_telemetry(cursor: Any) -> list[tuple[str, int, int]]:
    """(device id, boot, seq) of every telemetry row, duplicates included, sorted."""
    cursor.execute("SELECT device_id::text, boot, seq FROM telemetry_sample WHERE kind = 1")
    return sorted(cursor.fetchall())


def wait_until(check: Callable[[], Any], expected: Any, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while (found := check()) != expected:
        assert time.monotonic() < deadline, f"{found!r} != {expected!r}"
        time.sleep(0.1)
