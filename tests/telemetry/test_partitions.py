"""Telemetry storage upkeep: partitions ahead, dropped behind, retention per organization, and
reads by device and time range that touch only the partitions and index entries they need."""

from __future__ import annotations

import datetime as dt
import re
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from apps.accounts.models import Organization
from apps.devices.models import Device, UplinkMessage
from apps.telemetry import partitions
from apps.telemetry.models import DeviceEvent, TelemetrySample
from apps.telemetry.partitions import maintain, retention_days

from .conftest import make_device

pytestmark = pytest.mark.django_db

NOW = timezone.now()
TODAY = NOW.date()
MIDNIGHT = dt.datetime.combine(TODAY, dt.time.min, tzinfo=dt.UTC)


def days(table: str) -> list[dt.date]:
    return [part.lower.date() for part in partitions.partitions(table)]


def names(table: str, first: int, last: int) -> list[str]:
    return [f"{table}_{TODAY + dt.timedelta(days=n):%Y%m%d}" for n in range(first, last + 1)]


def test_partitions_are_made_from_a_week_back_to_a_week_ahead_for_both_tables_once() -> None:
    later = NOW + dt.timedelta(days=12)
    existing = {table: set(days(table)) for table in partitions.TABLES}

    done = maintain(now=later)

    for table in partitions.TABLES:
        wanted = [TODAY + dt.timedelta(days=n) for n in range(5, 20)]  # a week back .. ahead
        assert set(wanted) <= set(days(table))
        created = [f"{table}_{day:%Y%m%d}" for day in wanted if day not in existing[table]]
        assert [name for name in done.created if name.startswith(table + "_2")] == created
    assert maintain(now=later).created == []


def test_partitions_entirely_behind_the_longest_retention_are_dropped(settings) -> None:
    settings.TELEMETRY_RETENTION_DAYS = 30
    maintain(now=NOW - dt.timedelta(days=31))  # makes the days from 38 to 24 days ago

    done = maintain(now=NOW)

    assert sorted(done.dropped) == sorted(
        names("telemetry_sample", -38, -31) + names("telemetry_device_event", -38, -31)
    )
    assert days("telemetry_sample")[:7] == [TODAY + dt.timedelta(days=n) for n in range(-30, -23)]
    assert maintain(now=NOW).dropped == []


def test_retention_comes_from_the_settings_until_plans_carry_it(tree, settings) -> None:
    settings.TELEMETRY_RETENTION_DAYS = 10
    settings.TELEMETRY_RETENTION_DAYS_BY_ORGANIZATION = {tree["retail"].slug: 3}

    assert retention_days(tree["retail"]) == 3
    assert retention_days(tree["acme"]) == 10
    assert partitions.longest_retention_days() == 10


AGES = [0, 2, 3, 4, 9, 10, 11, 19, 20, 21]  # days before today's midnight (plus one hour)


def stored_ages(device: Device) -> list[int]:
    stamps = TelemetrySample.objects.filter(device=device).values_list("ts", flat=True)
    return sorted(((MIDNIGHT - ts) // dt.timedelta(days=1)) + 1 for ts in stamps)


def write_history(devices: list[Device]) -> None:
    rows = [
        (device.pk, MIDNIGHT - dt.timedelta(days=age) + dt.timedelta(hours=1), age)
        for device in devices
        for age in AGES
    ]
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO telemetry_sample (device_id, ts, kind, boot, seq, received_at, metrics) "
            "VALUES (%s, %s, 1, 1, %s, now(), '{}')",
            rows,
        )
        cursor.executemany(
            "INSERT INTO telemetry_device_event (device_id, ts, boot, seq, received_at, type, "
            "severity) VALUES (%s, %s, 1, %s, now(), 'x', 'info')",
            [row for row in rows if row[2] == 11],
        )


def test_rows_outlive_their_organizations_retention_by_not_one_day(
    tree: dict[str, Organization], telemetry_version, settings
) -> None:
    settings.TELEMETRY_RETENTION_DAYS = 10
    settings.TELEMETRY_RETENTION_DAYS_BY_ORGANIZATION = {
        tree["retail"].slug: 3,
        tree["hospital"].slug: 20,
    }
    for back in (21, 7):  # partitions from 27 days ago (28 is already behind retention) on
        maintain(now=NOW - dt.timedelta(days=back))
    acme, retail, hospital = (
        make_device(telemetry_version, tree[name]) for name in ("acme", "retail", "hospital")
    )
    write_history([acme, retail, hospital])

    done = maintain(now=NOW)

    assert stored_ages(acme) == [0, 2, 3, 4, 9, 10]
    assert stored_ages(retail) == [0, 2, 3]
    assert stored_ages(hospital) == [0, 2, 3, 4, 9, 10, 11, 19, 20]
    assert sorted(DeviceEvent.objects.values_list("device_id", flat=True)) == [hospital.pk]
    assert done.deleted_rows == 3 + 6 + 2  # acme 11 to 20 days, retail 4 to 20, two events
    assert names("telemetry_sample", -27, -21) == sorted(
        name for name in done.dropped if name.startswith("telemetry_sample")
    )
    assert maintain(now=NOW).deleted_rows == 0


def test_processed_uploads_are_deleted_a_day_later(device: Device) -> None:
    def upload(seq: int, processed: dt.datetime | None) -> UplinkMessage:
        return UplinkMessage.objects.create(
            device=device, kind="heartbeat", boot=1, seq=seq, payload={}, processed_at=processed
        )

    old, recent, pending = (
        upload(1, NOW - dt.timedelta(hours=25)),
        upload(2, NOW - dt.timedelta(hours=23)),
        upload(3, None),
    )

    assert maintain(now=NOW).deleted_uplinks == 1
    assert set(UplinkMessage.objects.values_list("pk", flat=True)) == {recent.pk, pending.pk}
    assert not UplinkMessage.objects.filter(pk=old.pk).exists()


def explain(sql: str, parameters: list[object]) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, parameters)
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.fixture
def busy_table() -> uuid.UUID:
    """200 devices x a sample a minute from yesterday 00:01 to today 23:00, analyzed."""
    maintain(now=NOW)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO telemetry_sample (device_id, ts, kind, boot, seq, received_at, metrics) "
            "SELECT ('00000000-0000-4000-8000-' || lpad(d::text, 12, '0'))::uuid, "
            "%s - m * interval '1 minute', 1, 1, m, now(), '{\"t\": 1}' "
            "FROM generate_series(1, 200) d, generate_series(0, 47 * 60 - 1) m",
            [MIDNIGHT + dt.timedelta(hours=23)],
        )
        cursor.execute("ANALYZE telemetry_sample")
    return uuid.UUID("00000000-0000-4000-8000-000000000042")


def scanned(plan: str) -> tuple[list[str], list[str]]:
    """The partitions a plan reads, and the indexes it reads them through."""
    tables = re.findall(r" on (telemetry_sample_\d{8}) ", plan)
    indexes = re.findall(r" using (telemetry_sample_\d{8}_pkey) ", plan)
    return sorted(tables), sorted(indexes)


def test_a_device_and_range_read_touches_one_partition_through_its_index(busy_table) -> None:
    plan = explain(
        "SELECT ts, metrics FROM telemetry_sample WHERE device_id = %s AND ts >= %s AND ts < %s",
        [busy_table, MIDNIGHT + dt.timedelta(hours=10), MIDNIGHT + dt.timedelta(hours=12)],
    )

    partition = names("telemetry_sample", 0, 0)
    assert scanned(plan) == (partition, [f"{partition[0]}_pkey"])
    assert "Seq Scan" not in plan


def test_an_aggregate_over_two_days_reads_only_those_partitions_by_index(busy_table) -> None:
    plan = explain(
        "SELECT date_bin('1 hour', ts, %s) AS bucket, avg((metrics->>'t')::float) "
        "FROM telemetry_sample WHERE device_id = %s AND kind = 1 AND ts >= %s AND ts < %s "
        "GROUP BY 1",
        [MIDNIGHT, busy_table, MIDNIGHT - dt.timedelta(hours=20), MIDNIGHT + dt.timedelta(hours=3)],
    )

    read = names("telemetry_sample", -1, 0)
    assert scanned(plan) == (read, [f"{name}_pkey" for name in read])
    assert "Seq Scan" not in plan


def test_the_maintenance_task_runs_hourly_on_the_beat_schedule(settings) -> None:
    from apps.telemetry.tasks import maintain_partitions

    entry = settings.CELERY_BEAT_SCHEDULE["telemetry.maintain_partitions"]
    assert entry == {"task": "telemetry.maintain_partitions", "schedule": dt.timedelta(hours=1)}
    assert maintain_partitions.name == "telemetry.maintain_partitions"
    assert maintain_partitions.soft_time_limit == 900
    result = maintain_partitions.run()
    assert result == {
        "created": result["created"],
        "dropped": [],
        "deleted_rows": 0,
        "deleted_uplinks": 0,
    }
    assert maintain_partitions.run()["created"] == []
