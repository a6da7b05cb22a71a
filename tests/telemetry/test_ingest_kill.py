"""Kill -9 of ingest workers under load, at a small scale (the full scale is bench/ingest.py):
a fleet of 20 devices sends 3,000 telemetry messages while two workers share the subscription
and are killed with SIGKILL in turn, about every second, at least ten times, each started again
under its name. The table must hold exactly what the devices sent: nothing lost,
nothing twice.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from apps.devices.models import Device
from apps.telemetry.models import DeadLetter
from tests.broker_support import MqttBroker

from .conftest import make_device
from .ingest_support import (
    SUBSCRIBED,
    Publisher,
    Workers,
    clear_telemetry,
    clear_worker_stats,
    fleet_messages,
    stored_telemetry,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEVICES, PER_DEVICE, RATE, KILLS = 20, 150, 300.0, 10
OPTIONS = ("--batch-size", "100", "--max-wait-ms", "50")


@pytest.fixture
def workers(mqtt_broker: MqttBroker, tmp_path: Path) -> Iterator[Workers]:
    clear_worker_stats()
    clear_telemetry()
    started = Workers(mqtt_broker, tmp_path)
    yield started
    started.close()
    clear_worker_stats()


@pytest.fixture
def fleet(tree, telemetry_version) -> list[Device]:
    return [make_device(telemetry_version, tree["acme"]) for _ in range(DEVICES)]


def rows() -> list[tuple[str, int, int]]:
    with connection.cursor() as cursor:
        return stored_telemetry(cursor)


def test_kill_9_under_load_loses_nothing_and_stores_nothing_twice(mqtt_broker, workers, fleet):
    messages = list(fleet_messages([str(device.pk) for device in fleet], PER_DEVICE))
    names = ("first", "second")
    running = {name: workers.start(name, *OPTIONS) for name in names}
    publisher = Publisher(mqtt_broker)
    sending = publisher.publish_in_background(messages, rate=RATE)
    kills, chance = 0, random.Random(5)
    try:
        while kills < KILLS or sending.is_alive():
            time.sleep(chance.uniform(0.3, 0.9))  # mid-batch, between commits and acks...
            victim = names[kills % 2]  # in turn: one restarts while the other works
            running[victim].wait_for(SUBSCRIBED)  # it had its chance to take messages
            running[victim].kill()
            kills += 1
            running[victim] = workers.start(victim, *OPTIONS, wait=False)
        sending.join()
        wait_until(lambda: len(rows()), len(messages), timeout=60)
    finally:
        sending.join()
        publisher.close()
    for worker in running.values():
        worker.wait_for(SUBSCRIBED)
        assert worker.stop() == 0

    stored = rows()
    assert kills >= KILLS
    assert not [key for key, count in Counter(stored).items() if count > 1]  # no duplicates
    assert stored == sorted(publisher.sent)  # exactly what the devices sent
    assert len(stored) == DEVICES * PER_DEVICE
    assert DeadLetter.objects.count() == 0
    # Their sessions hold nothing more: everything stored was acknowledged.
    again = [workers.start(name, wait=False) for name in names]
    for worker in again:
        worker.wait_for(SUBSCRIBED)
        assert worker.stop() == 0
        assert worker.last_report()["stored"] == 0
