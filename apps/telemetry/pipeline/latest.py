"""Latest values and last-seen: set-based statements, a constant number per batch.

Latest values (``telemetry_latest``) keep the newest value of every key. For the devices of a
batch: their rows are created if missing (``ON CONFLICT DO NOTHING``), then read and locked in
device order (two workers sharing devices never deadlock), merged here and written back with
one ``UPDATE ... FROM unnest(...)``. The batch's samples are split around the stored
``metrics_at``: the older ones only fill keys the stored row lacks, the newer ones override it,
each part merged in timestamp order, and ``metrics_at`` never goes back. Vitals (heartbeats)
follow the same rule with ``vitals_at``; ``uptime_s`` and ``boot`` come from the newest
heartbeat when it is newer than the stored vitals.

``devices_device.last_seen_at`` moves only when it is more than
``TELEMETRY_LAST_SEEN_GRANULARITY`` (15 s) older than the device's newest message of the batch:
a device sending every second costs one row update every 15 s, not one per message. Anything
reading ``last_seen_at`` (the wellness sweeper) must allow that much slack.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.db import connection

__all__ = ["touch_last_seen", "upsert_latest"]

Row = tuple[Any, ...]

# Parameters travel as one JSON document each (orjson encodes uuids and datetimes natively):
# much cheaper than psycopg adapting arrays element by element.
CREATE_SQL = """
INSERT INTO telemetry_latest (device_id, metrics, vitals, updated_at)
SELECT id::uuid, '{}', '{}', now() FROM jsonb_array_elements_text(%(ids)s::jsonb) AS i(id)
ORDER BY 1
ON CONFLICT (device_id) DO NOTHING
"""
LOCK_SQL = """
SELECT device_id, metrics::text, metrics_at, vitals::text, vitals_at, uptime_s, boot
FROM telemetry_latest
WHERE device_id IN (SELECT id::uuid FROM jsonb_array_elements_text(%(ids)s::jsonb) AS i(id))
ORDER BY device_id FOR UPDATE
"""
UPDATE_SQL = """
UPDATE telemetry_latest l
SET metrics = i.metrics, metrics_at = i.metrics_at, vitals = i.vitals, vitals_at = i.vitals_at,
    uptime_s = i.uptime_s, boot = i.boot, updated_at = now()
FROM jsonb_to_recordset(%(rows)s::jsonb) AS i(device_id uuid, metrics jsonb,
    metrics_at timestamptz, vitals jsonb, vitals_at timestamptz, uptime_s bigint, boot bigint)
WHERE l.device_id = i.device_id
"""
LAST_SEEN_SQL = """
WITH seen (id, at) AS (
    SELECT id, at FROM jsonb_to_recordset(%(rows)s::jsonb) AS i(id uuid, at timestamptz)
),
stale AS (
    SELECT d.id FROM devices_device d JOIN seen s ON s.id = d.id
    WHERE d.last_seen_at IS NULL OR d.last_seen_at < s.at - make_interval(secs => %(granularity)s)
    ORDER BY d.id FOR UPDATE OF d
)
UPDATE devices_device d SET last_seen_at = s.at
FROM stale JOIN seen s ON s.id = stale.id
WHERE d.id = stale.id
"""


def _merge(
    rows: list[Row], stored: dict[str, Any], stored_at: datetime | None
) -> tuple[dict[str, Any], datetime | None]:
    """``stored`` with ``rows`` (sorted by ts) merged in: older rows fill gaps, newer override."""
    older: dict[str, Any] = {}
    newer: dict[str, Any] = {}
    for row in rows:
        (older if stored_at is not None and row[1] < stored_at else newer).update(row[7])
    newest = rows[-1][1]
    return {**older, **stored, **newer}, newest if stored_at is None else max(stored_at, newest)


class _Device:
    """One device's latest row while it is being merged."""

    __slots__ = ("boot", "metrics", "metrics_at", "uptime", "vitals", "vitals_at")

    def __init__(self, row: Row) -> None:
        _, metrics, self.metrics_at, vitals, self.vitals_at, self.uptime, self.boot = row
        self.metrics: dict[str, Any] = orjson.loads(metrics)
        self.vitals: dict[str, Any] = orjson.loads(vitals)

    def apply(self, telemetry: list[Row], heartbeats: list[Row]) -> None:
        if telemetry:
            telemetry.sort(key=lambda row: row[1])
            self.metrics, self.metrics_at = _merge(telemetry, self.metrics, self.metrics_at)
        if heartbeats:
            heartbeats.sort(key=lambda row: row[1])
            newest = heartbeats[-1]
            if self.vitals_at is None or newest[1] >= self.vitals_at:
                self.uptime, self.boot = newest[7].get("uptime_s"), newest[3]
            vitals = [(*row[:7], _without_uptime(row[7])) for row in heartbeats]
            self.vitals, self.vitals_at = _merge(vitals, self.vitals, self.vitals_at)

    def row(self, device_id: uuid.UUID) -> dict[str, Any]:
        return {
            "device_id": device_id,
            "metrics": self.metrics,
            "metrics_at": self.metrics_at,
            "vitals": self.vitals,
            "vitals_at": self.vitals_at,
            "uptime_s": self.uptime,
            "boot": self.boot,
        }

    def pushed(self) -> dict[str, Any]:
        moments = [moment for moment in (self.metrics_at, self.vitals_at) if moment is not None]
        return {
            "ts": max(moments).isoformat() if moments else None,
            "metrics": self.metrics,
            "metrics_at": self.metrics_at.isoformat() if self.metrics_at else None,
            "vitals": self.vitals,
            "vitals_at": self.vitals_at.isoformat() if self.vitals_at else None,
        }


def _without_uptime(metrics: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in metrics.items() if key != "uptime_s"}


def upsert_latest(
    telemetry: dict[uuid.UUID, list[Row]], heartbeats: dict[uuid.UUID, list[Row]]
) -> dict[uuid.UUID, dict[str, Any]]:
    """Merge newly stored sample rows (per device: telemetry, heartbeats) into the devices'
    latest values; returns each changed device's new latest values ({"ts", "metrics",
    "metrics_at", "vitals", "vitals_at"}, ``ts`` the newest of both, ISO 8601)."""
    if not telemetry and not heartbeats:
        return {}
    ids = orjson.dumps(sorted(telemetry.keys() | heartbeats.keys())).decode()
    with connection.cursor() as cursor:
        cursor.execute(CREATE_SQL, {"ids": ids})
        cursor.execute(LOCK_SQL, {"ids": ids})
        devices = {row[0]: _Device(row) for row in cursor.fetchall()}
        for device_id, device in devices.items():
            device.apply(telemetry.get(device_id, []), heartbeats.get(device_id, []))
        rows = [device.row(device_id) for device_id, device in devices.items()]
        cursor.execute(UPDATE_SQL, {"rows": orjson.dumps(rows).decode()})
    return {device_id: device.pushed() for device_id, device in devices.items()}


def touch_last_seen(seen: dict[uuid.UUID, datetime], granularity: timedelta) -> int:
    """Move ``last_seen_at`` forward for the devices it lags by more than ``granularity``;
    returns how many rows were updated."""
    if not seen:
        return 0
    with connection.cursor() as cursor:
        rows = orjson.dumps([{"id": key, "at": at} for key, at in seen.items()]).decode()
        cursor.execute(LAST_SEEN_SQL, {"rows": rows, "granularity": granularity.total_seconds()})
        return int(cursor.rowcount)
