"""PostgreSQL restarted under load: the ingest worker pauses (it acknowledges nothing it could
not commit), reconnects by itself, and the table ends up with exactly what the devices sent.

The worker writes to a PostgreSQL server of this test's own (a copy of the test database), so
that the test can stop and start it; the shared server is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from apps.devices.models import Device
from tests.broker_support import MqttBroker

from .conftest import make_device
from .ingest_support import (
    Publisher,
    Workers,
    clear_telemetry,
    clear_worker_stats,
    database_url_for_tests,
    fleet_messages,
    stored_telemetry,
    wait_until,
)
from .private_postgres import PrivatePostgres

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEVICES, PER_DEVICE, RATE = 10, 120, 150.0
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


@pytest.fixture
def server(fleet: list[Device]) -> Iterator[PrivatePostgres]:
    """A server of our own holding a copy of the test database, fleet included."""
    private = PrivatePostgres.create()
    try:
        private.start()
        private.copy_database(source_url=database_url_for_tests(), name="ingest")
        yield private
    finally:
        private.destroy()


def test_a_postgresql_restart_under_load_pauses_ingest_and_loses_nothing(
    mqtt_broker, workers, fleet, server
):
    url = server.url("ingest")

    def rows() -> list[tuple[str, int, int]]:
        try:
            with psycopg.connect(url, connect_timeout=2) as db, db.cursor() as cursor:
                return stored_telemetry(cursor)
        except psycopg.OperationalError:
            return []

    messages = list(fleet_messages([str(device.pk) for device in fleet], PER_DEVICE))
    worker = workers.start("pg-restart", *OPTIONS, database_url=url)
    publisher = Publisher(mqtt_broker)
    sending = publisher.publish_in_background(messages, rate=RATE)
    try:
        wait_until(lambda: len(rows()) > 100, True)
        server.stop()  # fast shutdown: the worker's connection is cut
        time.sleep(2.0)  # messages keep coming meanwhile
        server.start()
        wait_until(lambda: len(rows()) > len(messages) // 2, True)
        server.stop(mode="immediate")  # a crash this time: recovery on the next start
        time.sleep(1.0)
        server.start()
        sending.join()
        wait_until(lambda: len(rows()), len(messages), timeout=60)
    finally:
        sending.join()
        publisher.close()
    assert worker.stop() == 0

    assert rows() == sorted(publisher.sent)  # nothing lost, nothing twice
    log = worker.text()
    assert "could not store a batch of" in log
    assert "stored the batch after" in log
    report = worker.last_report()
    assert report["database_errors"] >= 2
    assert report["messages"] == len(messages)
    # a commit cut off by the restart may have happened: the retry finds its rows stored
    assert report["stored"] + report["duplicates"] == len(messages)
