"""The ingest pipeline end to end on PostgreSQL: ``process_batch`` with crafted messages, exact
rows in every table it writes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import IntegrityError, connection
from django.utils import timezone

from apps.core.models import Event
from apps.devices.models import Device
from apps.telemetry.choices import SampleKind
from apps.telemetry.models import DeadLetter, DeviceEvent, LatestValues, TelemetrySample
from apps.telemetry.pipeline import process_batch
from apps.telemetry.types import BatchResult

from .conftest import make_device, make_version, message

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)
TS = NOW - dt.timedelta(minutes=5)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def samples() -> list[tuple[Any, ...]]:
    return list(
        TelemetrySample.objects.order_by(
            "device_id", "ts", "kind", "boot", "seq", "idx"
        ).values_list(
            "device_id", "ts", "kind", "boot", "seq", "idx", "received_at", "metrics", "extra"
        )
    )


def test_it_stores_a_telemetry_sample_normalized_with_unknown_fields_kept(device: Device) -> None:
    incoming = message(
        device,
        received_at=NOW,
        boot=3,
        seq=41,
        ts=iso(TS),
        metrics={"temperature": 21, "humidity": "45.5", "rssi": -60, "env": {"lux": 3}},
        firmware="1.2",
    )

    result = process_batch([incoming])

    assert result == BatchResult(received=1, stored=1, devices=1)
    assert samples() == [
        (
            device.pk,
            TS,
            SampleKind.TELEMETRY,
            3,
            41,
            0,
            NOW,
            {"temperature": 21.0, "humidity": 45.5},
            {"rssi": -60, "env": {"lux": 3}, "@envelope": {"firmware": "1.2"}},
        )
    ]
    assert DeadLetter.objects.count() == 0


def test_a_batch_message_stores_one_row_per_sample_under_one_seq(device: Device) -> None:
    body = {
        "boot": 2,
        "seq": 9,
        "samples": [
            {"ts": iso(TS), "metrics": {"temperature": 20.5}},
            {"ts": iso(TS + dt.timedelta(seconds=10)), "metrics": {"temperature": 20.75}},
            {"ts": iso(TS + dt.timedelta(seconds=20)), "metrics": {"battery_pct": 80}, "gps": 1},
        ],
    }

    result = process_batch([message(device, received_at=NOW, **body)])

    assert (result.stored, result.duplicates, result.dead_lettered) == (3, 0, 0)
    assert samples() == [
        (device.pk, TS, 1, 2, 9, 0, NOW, {"temperature": 20.5}, None),
        (device.pk, TS + dt.timedelta(seconds=10), 1, 2, 9, 1, NOW, {"temperature": 20.75}, None),
        (
            device.pk,
            TS + dt.timedelta(seconds=20),
            1,
            2,
            9,
            2,
            NOW,
            {"battery_pct": 80.0},
            {"@envelope": {"gps": 1}},
        ),
    ]


def test_a_heartbeat_stores_its_vitals_as_a_sample_and_in_the_latest_values(device: Device) -> None:
    incoming = message(
        device,
        "heartbeat",
        received_at=NOW,
        boot=3,
        seq=42,
        ts=iso(TS),
        uptime_s=86400,
        vitals={"battery_pct": 81.5, "rssi_dbm": -67},
    )

    assert process_batch([incoming]).stored == 1

    assert samples() == [
        (
            device.pk,
            TS,
            SampleKind.HEARTBEAT,
            3,
            42,
            0,
            NOW,
            {"battery_pct": 81.5, "rssi_dbm": -67, "uptime_s": 86400},
            None,
        )
    ]
    latest = LatestValues.objects.get(device=device)
    assert (latest.metrics, latest.metrics_at) == ({}, None)
    assert (latest.vitals, latest.vitals_at) == ({"battery_pct": 81.5, "rssi_dbm": -67}, TS)
    assert (latest.uptime_s, latest.boot) == (86400, 3)


def test_an_event_is_stored_with_its_severity_and_data(device: Device) -> None:
    incoming = message(
        device,
        "events",
        received_at=NOW,
        boot=3,
        seq=7,
        ts=iso(TS),
        type="door.opened",
        severity="warning",
        message="Door 2 opened",
        data={"door": 2},
        site="lobby",
    )

    assert process_batch([incoming]) == BatchResult(received=1, stored=1, devices=1)

    assert list(
        DeviceEvent.objects.values_list(
            "device_id", "ts", "boot", "seq", "received_at", "type", "severity", "message", "data"
        )
    ) == [
        (
            device.pk,
            TS,
            3,
            7,
            NOW,
            "door.opened",
            "warning",
            "Door 2 opened",
            {"door": 2, "@envelope": {"site": "lobby"}},
        )
    ]
    assert not LatestValues.objects.exists()  # events carry no metrics


def test_an_event_without_severity_is_info(device: Device) -> None:
    process_batch([message(device, "events", boot=1, seq=1, ts=iso(TS), type="boot")])

    assert list(DeviceEvent.objects.values_list("type", "severity", "message", "data")) == [
        ("boot", "info", "", None)
    ]


def test_one_telemetry_batch_event_per_organization(tree, device: Device) -> None:
    other = make_device(make_version(tree["globex"], "Meter"), tree["globex"])
    batch = [
        message(device, boot=1, seq=1, ts=iso(TS), metrics={"temperature": 1}),
        message(device, boot=1, seq=2, ts=iso(TS + dt.timedelta(seconds=5)), metrics={}),
        message(device, "events", boot=1, seq=1, ts=iso(TS - dt.timedelta(seconds=1)), type="x"),
        message(other, "heartbeat", boot=1, seq=1, ts=iso(TS), vitals={}),
        message(other, raw=b"nope"),
    ]

    result = process_batch(batch)

    assert (result.stored, result.devices, result.dead_lettered) == (4, 2, 1)
    events = Event.objects.filter(type="telemetry.batch")
    assert {(event.organization_id, event.subject_id): event.payload for event in events} == {
        (tree["acme"].pk, str(tree["acme"].pk)): {
            "messages": 3,
            "samples": 2,
            "events": 1,
            "devices": 1,
            "first_ts": (TS - dt.timedelta(seconds=1)).isoformat(),
            "last_ts": (TS + dt.timedelta(seconds=5)).isoformat(),
        },
        (tree["globex"].pk, str(tree["globex"].pk)): {
            "messages": 1,
            "samples": 1,
            "events": 0,
            "devices": 1,
            "first_ts": TS.isoformat(),
            "last_ts": TS.isoformat(),
        },
    }


def test_a_batch_of_duplicates_writes_nothing_and_emits_nothing(device: Device) -> None:
    batch = [message(device, boot=1, seq=n, ts=iso(TS), metrics={"humidity": n}) for n in (1, 2)]
    process_batch(batch)
    Event.objects.filter(type="telemetry.batch").delete()
    before = samples()

    result = process_batch(batch)

    assert result == BatchResult(received=2, duplicates=2)
    assert samples() == before
    assert not Event.objects.filter(type="telemetry.batch").exists()


def test_a_redelivery_inside_one_batch_is_stored_once(device: Device) -> None:
    first = message(device, boot=1, seq=1, ts=iso(TS), metrics={"humidity": 10})
    again = message(device, boot=1, seq=1, ts=iso(TS), metrics={"humidity": 10})

    result = process_batch([first, again])

    assert (result.received, result.stored, result.duplicates) == (2, 1, 1)
    assert len(samples()) == 1


def test_a_partly_stored_batch_stores_only_the_new_rows(device: Device) -> None:
    old = message(device, boot=1, seq=1, ts=iso(TS), metrics={"humidity": 10})
    process_batch([old])
    new = message(
        device, boot=1, seq=2, ts=iso(TS + dt.timedelta(seconds=1)), metrics={"humidity": 11}
    )

    result = process_batch([old, new])

    assert (result.stored, result.duplicates) == (1, 1)
    assert [row[4] for row in samples()] == [1, 2]
    assert LatestValues.objects.get(device=device).metrics == {"humidity": 11.0}


def last_seen(device: Device) -> dt.datetime | None:
    return Device.objects.values_list("last_seen_at", flat=True).get(pk=device.pk)


@pytest.mark.parametrize(
    ("previous", "moves"),
    [(None, True), (dt.timedelta(seconds=16), True), (dt.timedelta(seconds=14), False)],
)
@pytest.mark.parametrize("kind", ["telemetry", "heartbeat", "events"])
def test_last_seen_moves_only_past_its_granularity(
    device: Device, kind: str, previous: dt.timedelta | None, moves: bool
) -> None:
    if previous is not None:
        Device.objects.filter(pk=device.pk).update(last_seen_at=NOW - previous)
    before = last_seen(device)
    body = {"metrics": {}, "vitals": {}, "type": "x"}

    process_batch([message(device, kind, received_at=NOW, boot=1, seq=1, ts=iso(TS), **body)])

    assert last_seen(device) == (NOW if moves else before)


def test_last_seen_takes_the_newest_arrival_and_ignores_duplicates(device: Device) -> None:
    batch = [
        message(
            device, received_at=NOW - dt.timedelta(seconds=s), boot=1, seq=s, ts=iso(TS), metrics={}
        )
        for s in (30, 20, 40)
    ]
    process_batch(batch)
    assert last_seen(device) == NOW - dt.timedelta(seconds=20)

    Device.objects.filter(pk=device.pk).update(last_seen_at=None)
    process_batch([message(device, received_at=NOW, boot=1, seq=30, ts=iso(TS), metrics={})])

    assert last_seen(device) is None  # a redelivery says nothing about the device now


def test_a_maintenance_device_is_accepted(tree, telemetry_version) -> None:
    device = make_device(telemetry_version, tree["acme"], state="maintenance")

    result = process_batch([message(device, boot=1, seq=1, ts=iso(TS), metrics={})])

    assert (result.stored, result.dead_lettered) == (1, 0)


@pytest.mark.parametrize(("cache_seconds", "stored"), [(10, 0), (0, 1)])
def test_a_schema_change_applies_once_the_device_facts_expire(
    device: Device, telemetry_version, settings, cache_seconds: int, stored: int
) -> None:
    settings.TELEMETRY_DEVICE_CACHE_SECONDS = cache_seconds
    hot = {"boot": 1, "ts": iso(TS), "metrics": {"temperature": 130}}
    assert process_batch([message(device, seq=1, **hot)]).by_reason == {"schema": 1}
    telemetry_version.telemetry_schema = {"metrics": [{"name": "temperature", "max": 150}]}
    telemetry_version.save()  # a new updated_at: the schema is compiled again when next read

    assert process_batch([message(device, seq=2, **hot)]).stored == stored


def test_an_empty_batch_touches_nothing(django_assert_num_queries) -> None:
    with django_assert_num_queries(0):
        assert process_batch([]) == BatchResult()


def batch_of(devices: list[Device], size: int, boot: int) -> list[Any]:
    """``size`` live messages over ``devices`` (alert rules see them): telemetry, one in five a
    heartbeat."""
    start = timezone.now() - dt.timedelta(seconds=10)
    return [
        message(
            devices[n % len(devices)],
            "heartbeat" if n % 5 == 0 else "telemetry",
            boot=boot,
            seq=n,
            ts=iso(start + dt.timedelta(milliseconds=n)),
            metrics={"temperature": 20 + n % 7, "humidity": 40},
            vitals={"battery_pct": 90},
        )
        for n in range(size)
    ]


# savepoint + release around the batch (2), savepoint + release around the samples' COPY (2),
# latest values: create, lock, update (3), last-seen (1), the telemetry.batch event (1); cold
# caches add the device facts, schemas and partitions (3) and the alert rules' first read of
# the organization (2); the de-duplicating path rolls the COPY's savepoint back (+1) and adds
# the staging table's CREATE IF NOT EXISTS, the INSERT ... ON CONFLICT and the TRUNCATE (3).
COLD, WARM, DEDUPLICATING = 14, 9, 13


@pytest.mark.parametrize("size", [10, 500])
def test_a_batch_costs_the_same_number_of_queries_whatever_its_size(
    tree, telemetry_version, django_assert_num_queries, size: int
) -> None:
    devices = [make_device(telemetry_version, tree["acme"]) for _ in range(20)]

    with django_assert_num_queries(COLD):
        assert process_batch(batch_of(devices, size, boot=1)).stored == size
    with django_assert_num_queries(WARM):
        assert process_batch(batch_of(devices, size, boot=2)).stored == size
    redelivered = batch_of(devices, size, boot=3)
    process_batch(redelivered[: size // 2])
    with django_assert_num_queries(DEDUPLICATING):
        result = process_batch(redelivered)
    assert (result.stored, result.duplicates) == (size - size // 2, size // 2)


def test_a_database_error_raises_commits_nothing_and_rereads_the_partitions(
    device: Device,
) -> None:
    yesterday = NOW - dt.timedelta(days=1)
    process_batch([message(device, boot=1, seq=1, ts=iso(yesterday), metrics={})])  # cached
    with connection.cursor() as cursor:  # dropped behind the pipeline's back
        cursor.execute(f"DROP TABLE telemetry_sample_{yesterday:%Y%m%d}")
    batch = [
        message(device, boot=1, seq=2, ts=iso(yesterday), metrics={}),
        message(device, boot=1, seq=3, ts=iso(TS), metrics={}),
        message(device, raw=b"{bad"),
    ]

    with pytest.raises(IntegrityError, match="no partition"):
        process_batch(batch)

    assert [row[4] for row in samples()] == []  # the day's rows went with the partition
    assert not DeadLetter.objects.exists()
    result = process_batch(batch)  # the partitions are read again
    assert (result.stored, result.by_reason) == (1, {"timestamp_range": 1, "malformed_json": 1})
