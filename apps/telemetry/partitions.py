"""Telemetry storage upkeep: daily partitions ahead, old ones dropped, retention per organization.

``telemetry_sample`` and ``telemetry_device_event`` are range-partitioned by day (UTC) on the
device's timestamp. ``maintain()`` (the hourly task ``telemetry.maintain_partitions``; safe to
run any time, any number of times):

1. creates the daily partitions that do not exist yet, for both tables, from as far back as the
   pipeline accepts timestamps (``TELEMETRY_MAX_AGE``, within the longest retention) to
   ``TELEMETRY_PARTITIONS_AHEAD`` (7) days ahead: a fresh installation accepts a device's week
   of queued data at once;
2. drops the partitions that end before the longest retention of any organization: dropping a
   whole day costs nothing, unlike deleting its rows;
3. in the partitions it keeps, deletes the rows of the organizations whose retention is
   shorter, one set-based ``DELETE`` per partition and retention, bounded by the partition key;
4. deletes HTTPS uploads (``UplinkMessage``) processed more than a day ago: by then the
   telemetry table's own key de-duplicates a resent message.

Retention: ``retention_days(organization)``, from ``TELEMETRY_RETENTION_DAYS`` (30) and the
per-organization override ``TELEMETRY_RETENTION_DAYS_BY_ORGANIZATION`` ({slug: days}) until plans
carry it (the billing issue). Rows follow their device's current organization. DDL waits at most
``LOCK_TIMEOUT`` for the ingest workers' locks and otherwise gives up until the next run.
"""

from __future__ import annotations

import math
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.accounts.models import Organization

__all__ = [
    "TABLES",
    "Maintenance",
    "Partition",
    "longest_retention_days",
    "maintain",
    "partitions",
    "retention_days",
]

TABLES = ("telemetry_sample", "telemetry_device_event")
LOCK_TIMEOUT = "5s"
BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")
PARTITIONS_SQL = """
SELECT child.relname, pg_get_expr(child.relpartbound, child.oid)
FROM pg_inherits i
JOIN pg_class parent ON parent.oid = i.inhparent
JOIN pg_class child ON child.oid = i.inhrelid
WHERE parent.relname = %(table)s AND parent.relnamespace = current_schema()::regnamespace
"""


@dataclass(frozen=True, order=True)
class Partition:
    lower: datetime
    upper: datetime
    name: str


@dataclass
class Maintenance:
    """What one ``maintain()`` run did."""

    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    deleted_rows: int = 0
    deleted_uplinks: int = 0


def retention_days(organization: Organization) -> int:
    """How many days of telemetry ``organization`` keeps."""
    overrides = settings.TELEMETRY_RETENTION_DAYS_BY_ORGANIZATION
    return int(overrides.get(organization.slug, settings.TELEMETRY_RETENTION_DAYS))


def longest_retention_days() -> int:
    overrides = settings.TELEMETRY_RETENTION_DAYS_BY_ORGANIZATION.values()
    return max([settings.TELEMETRY_RETENTION_DAYS, *overrides])


def partitions(table: str) -> list[Partition]:
    """The partitions of ``table`` with their bounds, oldest first."""
    with connection.cursor() as cursor:
        cursor.execute(PARTITIONS_SQL, {"table": table})
        rows = cursor.fetchall()
    found = []
    for name, bound in rows:
        match = BOUND.search(bound or "")
        if match:
            lower, upper = (datetime.fromisoformat(value) for value in match.groups())
            found.append(Partition(lower, upper, name))
    return sorted(found)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _create(table: str, days: list[date], existing: list[Partition]) -> list[str]:
    created = []
    for day in days:
        lower, upper = _midnight(day), _midnight(day + timedelta(days=1))
        if any(part.lower < upper and lower < part.upper for part in existing):
            continue  # covered (or overlapped by a partition someone made by hand)
        name = f"{table}_{day:%Y%m%d}"
        with connection.cursor() as cursor:
            cursor.execute(
                f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{table}" '
                "FOR VALUES FROM (%s) TO (%s)",
                [lower, upper],
            )
        created.append(name)
    return created


def _drop(existing: list[Partition], cutoff: datetime) -> list[str]:
    dropped = []
    for part in existing:
        if part.upper <= cutoff:
            with connection.cursor() as cursor:
                cursor.execute(f'DROP TABLE IF EXISTS "{part.name}"')
            dropped.append(part.name)
    return dropped


def _shorter_retention(today: datetime, longest: int) -> dict[int, tuple[list[uuid.UUID], bool]]:
    """{days: (organization ids, whether the ids are the exceptions)} for every retention
    shorter than the longest: the default applies to every organization not overridden."""
    overrides = settings.TELEMETRY_RETENTION_DAYS_BY_ORGANIZATION
    ids = dict(Organization.objects.filter(slug__in=list(overrides)).values_list("slug", "id"))
    by_days: dict[int, list[uuid.UUID]] = defaultdict(list)
    for slug, days in overrides.items():
        if slug in ids:
            by_days[int(days)].append(ids[slug])
    default = settings.TELEMETRY_RETENTION_DAYS
    groups: dict[int, tuple[list[uuid.UUID], bool]] = {
        days: (organizations, False)
        for days, organizations in by_days.items()
        if days < longest and days != default
    }
    if default < longest:
        others = [i for days, group in by_days.items() if days != default for i in group]
        groups[default] = (others, True)
    return groups


def _delete_expired(table: str, kept: list[Partition], today: datetime, longest: int) -> int:
    deleted = 0
    for days, (organization_ids, excluded) in sorted(_shorter_retention(today, longest).items()):
        cutoff = today - timedelta(days=days)
        test = "<> ALL" if excluded else "= ANY"
        for part in kept:
            if part.lower >= cutoff:
                continue
            # the partition's name comes from the catalog, the test is one of two constants
            statement = (
                f'DELETE FROM "{part.name}" WHERE ts < %(cutoff)s AND device_id IN (SELECT id '  # noqa: S608
                f"FROM devices_device WHERE organization_id {test}(%(ids)s::uuid[]))"
            )
            with connection.cursor() as cursor:
                cursor.execute(statement, {"cutoff": cutoff, "ids": organization_ids})
                deleted += cursor.rowcount
    return deleted


def maintain(*, now: datetime | None = None) -> Maintenance:
    """Create partitions ahead, drop and trim the ones behind retention (module docstring)."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    midnight = _midnight(today)
    longest = longest_retention_days()
    ahead = settings.TELEMETRY_PARTITIONS_AHEAD
    back = min(math.ceil(settings.TELEMETRY_MAX_AGE / timedelta(days=1)), longest)
    days = [today + timedelta(days=offset) for offset in range(-back, ahead + 1)]
    done = Maintenance()
    for table in TABLES:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            existing = partitions(table)
            done.created += _create(table, days, existing)
            done.dropped += _drop(existing, midnight - timedelta(days=longest))
        kept = [
            part for part in partitions(table) if part.upper > midnight - timedelta(days=longest)
        ]
        with transaction.atomic():
            done.deleted_rows += _delete_expired(table, kept, midnight, longest)
    done.deleted_uplinks = _delete_processed_uplinks(now)
    return done


def _delete_processed_uplinks(now: datetime) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM devices_uplinkmessage WHERE processed_at < %s",
            [now - timedelta(days=1)],
        )
        return int(cursor.rowcount)
