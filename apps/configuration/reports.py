"""What devices report (``config/reported``) and the drift sweep.

A report moves the device's state: ``applied`` with the desired checksum -> ``in_sync``;
``error`` -> ``error``; anything else (an older version applied) -> ``pending``. The sweep turns
``pending`` older than the tolerance into ``drifted``, in one statement. Each change into
``in_sync``, ``error`` or ``drifted`` raises a domain event (``configuration.in_sync``,
``configuration.failed``, ``configuration.drifted``) that alerting and webhooks can use.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from apps.devices.lifecycle import emit_many

from .choices import ReportedStatus, SyncStatus
from .services import drift_tolerance

EVENTS = {
    SyncStatus.IN_SYNC: "configuration.in_sync",
    SyncStatus.ERROR: "configuration.failed",
    SyncStatus.DRIFTED: "configuration.drifted",
}


@dataclass(frozen=True)
class Report:
    """One device's report (``config/reported`` or ``POST /device/v1/config/reported``)."""

    device_id: uuid.UUID
    version: int
    checksum: str
    status: str  # ReportedStatus
    error: str
    at: datetime


STORE_SQL = """
WITH incoming AS (
    SELECT * FROM unnest(%(devices)s::uuid[], %(versions)s::int[], %(checksums)s::text[],
                         %(statuses)s::text[], %(errors)s::text[], %(ats)s::timestamptz[])
        AS r(device_id, version, checksum, status, error, at)
), before AS (
    SELECT s.device_id, s.status FROM configuration_deviceconfigurationstate s
    JOIN incoming r USING (device_id) ORDER BY s.device_id FOR UPDATE OF s
)
UPDATE configuration_deviceconfigurationstate s SET
    reported_version = r.version,
    reported_checksum = r.checksum,
    reported_status = r.status,
    reported_error = r.error,
    reported_at = r.at,
    status = CASE
        WHEN r.status = %(error)s THEN %(error)s
        WHEN r.checksum = s.desired_checksum THEN %(in_sync)s
        WHEN s.status = %(drifted)s THEN %(drifted)s
        ELSE %(pending)s END,
    out_of_sync_since = CASE
        WHEN r.status <> %(error)s AND r.checksum = s.desired_checksum THEN NULL
        ELSE coalesce(s.out_of_sync_since, r.at) END
FROM incoming r, before b
WHERE s.device_id = r.device_id AND b.device_id = r.device_id
  AND (s.reported_at IS NULL OR r.at >= s.reported_at)
  AND (s.reported_version IS NULL OR r.version >= s.reported_version)
RETURNING s.device_id, s.organization_id, s.status, b.status, s.reported_version,
          s.reported_error
"""


@transaction.atomic
def reports_record(*, reports: Sequence[Report]) -> int:
    """Store the reports in one statement (the newest per device; a report older than the one
    stored, or a redelivered one, changes nothing) and raise an event per device whose status
    changed into ``in_sync`` or ``error``. Devices without a desired state are ignored.
    Returns how many devices' states were written."""
    newest: dict[uuid.UUID, Report] = {}
    for report in reports:
        known = newest.get(report.device_id)
        if known is None or (report.version, report.at) >= (known.version, known.at):
            newest[report.device_id] = report
    if not newest:
        return 0
    rows = _store(list(newest.values()))
    _emit_changes(
        [
            (organization_id, device_id, status, {"version": version, "error": error})
            for device_id, organization_id, status, previous, version, error in rows
            if status != previous
        ]
    )
    return len(rows)


def _store(reports: list[Report]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(
            STORE_SQL,
            {
                "devices": [str(r.device_id) for r in reports],
                "versions": [r.version for r in reports],
                "checksums": [r.checksum for r in reports],
                "statuses": [r.status for r in reports],
                "errors": [r.error[:2000] for r in reports],
                "ats": [r.at for r in reports],
                "error": ReportedStatus.ERROR,
                "in_sync": SyncStatus.IN_SYNC,
                "pending": SyncStatus.PENDING,
                "drifted": SyncStatus.DRIFTED,
            },
        )
        return cursor.fetchall()


def _emit_changes(rows: list[tuple[Any, uuid.UUID, str, dict[str, Any]]]) -> None:
    for status, event_type in EVENTS.items():
        emit_many(
            event_type,
            [
                (organization_id, str(device_id), {"device": str(device_id), **extra})
                for organization_id, device_id, new, extra in rows
                if new == status
            ],
        )


SWEEP_SQL = """
UPDATE configuration_deviceconfigurationstate SET status = %(drifted)s
WHERE status = %(pending)s AND out_of_sync_since < %(cutoff)s
RETURNING device_id, organization_id, desired_version, reported_version, out_of_sync_since
"""


@transaction.atomic
def drift_sweep(*, now: datetime | None = None) -> int:
    """Mark as drifted every device pending for longer than the tolerance (one indexed
    UPDATE ... RETURNING) and raise ``configuration.drifted`` for each. Returns how many."""
    cutoff = (now or timezone.now()) - drift_tolerance()
    with connection.cursor() as cursor:
        cursor.execute(
            SWEEP_SQL,
            {"drifted": SyncStatus.DRIFTED, "pending": SyncStatus.PENDING, "cutoff": cutoff},
        )
        rows = cursor.fetchall()
    _emit_changes(
        [
            (
                organization_id,
                device_id,
                SyncStatus.DRIFTED,
                {
                    "desired_version": desired,
                    "reported_version": reported,
                    "since": since.isoformat(),
                },
            )
            for device_id, organization_id, desired, reported, since in rows
        ]
    )
    return len(rows)
