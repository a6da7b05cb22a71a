"""At-least-once delivery across a worker killed with SIGKILL, with real Celery workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connection, transaction

from apps.core import events, tasks
from apps.core.models import DeliveryStatus, EventDelivery
from tests.core import outbox_consumers

EVENTS = 40
LEASE_SECONDS = 2
DEADLINE_SECONDS = 45


def _database_url() -> str:
    """The development DATABASE_URL pointed at this run's test database."""
    parts = urlsplit(settings.DATABASE_URL)
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


def _scalar(sql: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return int(cursor.fetchone()[0])


def _delivered() -> int:
    return EventDelivery.objects.filter(status=DeliveryStatus.DELIVERED).count()


def _wait_until(condition: Callable[[], bool], *, seconds: float, tick: Callable[[], None]) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not done within {seconds} s")
        tick()


def _play_beat() -> None:
    tasks.sweep_outbox.delay()
    time.sleep(1)


@pytest.fixture
def outbox_tables(transactional_db) -> Iterator[None]:
    with connection.cursor() as cursor:
        cursor.execute(outbox_consumers.CREATE_TABLES)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(outbox_consumers.DROP_TABLES)


@pytest.fixture
def start_worker(
    tmp_path: Path, private_broker: str
) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Start real ``celery worker`` processes on the private broker; kill them all at the end."""
    started: list[subprocess.Popen[bytes]] = []
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": private_broker,
        "OUTBOX_LEASE_SECONDS": str(LEASE_SECONDS),
    }

    def start(name: str) -> subprocess.Popen[bytes]:
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker",
            "-I", "tests.core.outbox_consumers", "-n", f"{name}@%h",
            "--pool", "prefork", "--concurrency", "2",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
        ]  # fmt: skip
        with open(tmp_path / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                command,
                cwd=settings.BASE_DIR,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the pool children die with it
            )
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            _kill(process)


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.mark.slow
def test_every_event_is_delivered_exactly_once_in_effect_across_a_killed_worker(
    outbox_tables, registry, isolated_broker, start_worker
) -> None:
    outbox_consumers.register()
    with transaction.atomic():  # one commit, one wake-up
        emitted = {
            str(events.emit(outbox_consumers.EVENT_TYPE, organization_id=None, payload={}).pk)
            for _ in range(EVENTS)
        }
    assert EventDelivery.objects.filter(status=DeliveryStatus.PENDING).count() == EVENTS

    first = start_worker("outbox-first")
    _wait_until(lambda: _delivered() >= 8, seconds=30, tick=lambda: time.sleep(0.05))
    _kill(first)  # SIGKILL to the whole worker, mid-batch and most likely mid-delivery
    delivered_when_killed = _delivered()
    assert 8 <= delivered_when_killed < EVENTS

    start_worker("outbox-second")
    # Play celery beat: the sweeper re-enqueues work whose lease died with the first worker.
    _wait_until(
        lambda: _delivered() == EVENTS,
        seconds=DEADLINE_SECONDS,
        tick=_play_beat,
    )

    effects = outbox_consumers.EFFECTS_TABLE
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT event_id::text, count(*) FROM {effects} GROUP BY event_id")
        assert dict(cursor.fetchall()) == dict.fromkeys(emitted, 1)
    assert list(EventDelivery.objects.values_list("status", "lease_until").distinct()) == [
        ("delivered", None)
    ]
    attempts = _scalar(f"SELECT sum(attempts) FROM {outbox_consumers.ATTEMPTS_TABLE}")
    assert attempts >= EVENTS
    assert _scalar(f"SELECT count(DISTINCT pid) FROM {effects}") >= 2  # both workers delivered
