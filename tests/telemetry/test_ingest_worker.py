"""``manage.py ingest`` end to end: a real Mosquitto (configured as in production), the worker as
a separate process on the test database, and messages published as devices publish them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
from django.conf import settings
from django.db import connection

from apps.devices.models import Device, UplinkMessage
from apps.telemetry import ingest_stats
from apps.telemetry.models import DeadLetter, DeviceEvent, TelemetrySample
from tests.broker_support import MqttBroker

from .conftest import make_device
from .ingest_support import (
    Publisher,
    Workers,
    clear_telemetry,
    clear_worker_stats,
    fleet_messages,
    now_iso,
    stored_telemetry,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def workers(mqtt_broker: MqttBroker, tmp_path: Path) -> Iterator[Workers]:
    clear_worker_stats()
    clear_telemetry()
    started = Workers(mqtt_broker, tmp_path)
    yield started
    started.close()
    clear_worker_stats()


@pytest.fixture
def publisher(mqtt_broker: MqttBroker) -> Iterator[Publisher]:
    fleet = Publisher(mqtt_broker)
    yield fleet
    fleet.close()


@pytest.fixture
def fleet(tree, telemetry_version) -> list[Device]:
    return [make_device(telemetry_version, tree["acme"]) for _ in range(3)]


def ids(devices: list[Device]) -> list[str]:
    return [str(device.pk) for device in devices]


def rows() -> list[tuple[str, int, int]]:
    with connection.cursor() as cursor:
        return stored_telemetry(cursor)


def test_it_stores_a_batch_then_acknowledges_it(workers, publisher, fleet):
    worker = workers.start("e2e", "--max-wait-ms", "50")
    publisher.publish(fleet_messages(ids(fleet), 10))
    device = fleet[0]
    heartbeat = {"boot": 1, "seq": 1, "ts": now_iso(), "uptime_s": 5, "vitals": {"rssi": -60.0}}
    event = {"boot": 1, "seq": 1, "ts": now_iso(), "type": "door.opened", "severity": "info"}
    publisher.client.publish(f"devices/{device.pk}/heartbeat", orjson.dumps(heartbeat), qos=1)
    publisher.client.publish(f"devices/{device.pk}/events", orjson.dumps(event), qos=1)
    publisher.client.publish(
        f"devices/{device.pk}/telemetry", b"{not json", qos=1
    ).wait_for_publish(10)

    wait_until(lambda: DeadLetter.objects.count(), 1)
    wait_until(lambda: DeviceEvent.objects.count(), 1)
    wait_until(lambda: len(rows()), 30)
    assert worker.stop() == 0

    assert rows() == sorted(publisher.sent)
    assert TelemetrySample.objects.filter(kind=2, device=device).count() == 1
    assert worker.last_report() == {
        "messages": 33,
        "batches": worker.last_report()["batches"],
        "stored": 32,
        "duplicates": 0,
        "dead_letters": 1,
        "uploads": 0,
        "database_errors": 0,
    }
    letter = DeadLetter.objects.get()
    assert (letter.reason, bytes(letter.payload), letter.topic, letter.device_id) == (
        "malformed_json",
        b"{not json",
        f"devices/{device.pk}/telemetry",
        device.pk,
    )
    # Everything was acknowledged: the same session, resumed, has nothing more to deliver.
    again = workers.start("e2e")
    assert "session present: True" in again.text()
    assert again.stop() == 0
    assert again.last_report()["messages"] == 0
    assert rows() == sorted(publisher.sent)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_messages_sent_while_the_worker_is_down_wait_in_its_session(
    workers, publisher, fleet, protocol
):
    first = workers.start("persistent", "--protocol", protocol)
    assert first.stop() == 0
    publisher.publish(fleet_messages(ids(fleet), 5))

    back = workers.start("persistent", "--protocol", protocol, "--max-wait-ms", "50")
    wait_until(lambda: len(rows()), 15)
    assert back.stop() == 0

    assert "session present: True" in back.text()
    assert back.last_report()["messages"] == 15
    assert rows() == sorted(publisher.sent)


def test_a_batch_whose_write_fails_is_not_acknowledged_and_is_retried(workers, publisher, fleet):
    with connection.cursor() as cursor:
        # The first insert into the telemetry table fails inside PostgreSQL; the sequence counts
        # the attempts and, unlike the failed transaction, is not rolled back.
        cursor.execute(
            """
            CREATE SEQUENCE test_ingest_fault;
            CREATE FUNCTION test_ingest_fault() RETURNS trigger AS $$
            BEGIN
                IF nextval('test_ingest_fault') = 1 THEN
                    RAISE EXCEPTION 'injected failure';
                END IF;
                RETURN NEW;
            END $$ LANGUAGE plpgsql;
            CREATE TRIGGER test_ingest_fault BEFORE INSERT ON telemetry_sample
                FOR EACH ROW EXECUTE FUNCTION test_ingest_fault();
            """
        )
    try:
        worker = workers.start("faulty", "--max-wait-ms", "50", "--batch-size", "1000")
        publisher.publish(fleet_messages(ids(fleet)[:1], 1))
        wait_until(lambda: len(rows()), 1)
        assert worker.stop() == 0
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                "DROP TRIGGER test_ingest_fault ON telemetry_sample;"
                "DROP FUNCTION test_ingest_fault(); DROP SEQUENCE test_ingest_fault;"
            )

    log = worker.text()
    assert "could not store a batch of 1 message(s)" in log
    assert "injected failure" in log
    assert "stored the batch after 1 failed attempt(s)" in log
    assert worker.last_report() == {
        "messages": 1,
        "batches": 1,
        "stored": 1,
        "duplicates": 0,
        "dead_letters": 0,
        "uploads": 0,
        "database_errors": 1,
    }
    assert rows() == sorted(publisher.sent)


def test_it_drains_the_https_uploads_too(workers, fleet):
    device = fleet[0]
    UplinkMessage.objects.create(
        device=device,
        kind="telemetry",
        boot=7,
        seq=1,
        payload={"boot": 7, "seq": 1, "ts": now_iso(), "metrics": {"temperature": 21.5}},
    )
    worker = workers.start("uplinks")
    wait_until(lambda: len(rows()), 1)
    wait_until(lambda: UplinkMessage.objects.filter(processed_at=None).count(), 0)
    assert worker.stop() == 0

    assert rows() == [(str(device.pk), 7, 1)]
    assert worker.last_report()["uploads"] == 1
    assert worker.last_report()["messages"] == 0


def test_its_stats_are_in_redis_while_it_runs(workers, publisher, fleet):
    worker = workers.start("stats", "--max-wait-ms", "50")
    publisher.publish(fleet_messages(ids(fleet), 4))
    wait_until(lambda: len(rows()), 12)

    def published() -> int:
        found = ingest_stats.snapshot()["workers"]
        return found[0]["messages"] if found else 0

    wait_until(published, 12)
    snapshot = ingest_stats.snapshot()
    (document,) = snapshot["workers"]
    assert document["name"] == "stats"
    assert document["pid"] == worker.process.pid
    assert (document["connected"], document["state"]) == (True, "running")
    assert (document["stored"], document["duplicates"], document["dead_letters"]) == (12, 0, 0)
    assert document["batch_size_avg"] == round(12 / document["batches"], 1)
    assert document["messages_per_second"] > 0
    totals = snapshot["totals"]
    assert (totals["workers"], totals["messages"], totals["stored"]) == (1, 12, 12)
    assert totals["dead_letters_by_reason"] == {}
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = ingest_stats._worker_key("stats")
    assert 0 < client.ttl(key) <= ingest_stats.WORKER_TTL_SECONDS  # a killed worker fades out
    assert json.loads(client.get(key))["name"] == "stats"

    assert worker.stop() == 0
    assert ingest_stats.snapshot()["workers"] == []  # a clean stop withdraws at once


def test_a_retired_worker_stores_what_its_session_held_and_gets_nothing_more(
    workers, publisher, fleet
):
    keep = workers.start("keep", "--max-wait-ms", "50")
    old = workers.start("old")
    assert old.stop() == 0
    # The broker deals the shared subscription's messages to both sessions, the stopped
    # worker's included: its share waits in its session.
    publisher.publish(fleet_messages(ids(fleet), 10))
    wait_until(lambda: len(rows()) > 0, True)

    retiring = workers.start("old", "--retire", wait=False)
    assert retiring.process.wait(timeout=60) == 0  # it stops by itself once drained
    assert "retired: the session is empty and receives nothing new" in retiring.text()
    held = retiring.last_report()["messages"]
    assert 0 < held < 30
    wait_until(lambda: len(rows()), 30)

    more = [(device_id, 2, seq) for device_id, _, seq in fleet_messages(ids(fleet), 5)]
    publisher.publish(more)
    wait_until(lambda: len(rows()), 45)
    assert keep.stop() == 0
    assert keep.last_report()["messages"] == 45 - held
    assert rows() == sorted(publisher.sent)
    again = workers.start("old", "--retire", wait=False)
    assert again.process.wait(timeout=60) == 0
    assert again.last_report()["messages"] == 0
