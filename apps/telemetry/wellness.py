"""The heartbeat sweeper: each device's heartbeat policy applied to its connectivity.

Online/offline comes first from the devices' retained ``status`` messages (the last will, fast:
``apps.devices.connectivity``). The sweeper catches what a last will cannot: a device whose
connection looks alive but that stopped sending (a stuck application, a half-open TCP
connection the broker has not noticed yet), and devices that never speak MQTT.

A device's policy is the one its provisioning recorded (``Device.provisioning["heartbeat"]``:
what the device was told at enrollment, so what it actually does), else its profile version's
(``heartbeat_interval_seconds`` x ``heartbeat_missed_beats``). An ``active`` device is overdue
when ``last_seen_at`` is older than interval x missed beats plus
``TELEMETRY_LAST_SEEN_GRANULARITY`` (the ingest pipeline moves ``last_seen_at`` only when it is
that stale, so it may lag the newest message by that much).

One sweep is one ``UPDATE ... RETURNING`` whose every read is an index range of two partial
indexes (migration ``devices.0007_wellness_index``), so its cost follows the devices it changes,
not the fleet:

- ``online`` (or ``unknown`` but seen) and overdue -> ``offline``;
- devices of an HTTPS-only profile (``connection_type = https``), which have no status topic,
  ``offline`` (or ``unknown``) and seen within their policy -> ``online``. MQTT devices come back
  online through their status message only: a heartbeat processed late, after the last will,
  would otherwise flap them online and offline again.

Each change writes the same ``device.online`` / ``device.offline`` event as the connectivity
worker, and after commit one websocket push per organization. Devices in any other state
(maintenance, suspended, decommissioned...) are left alone, and so is a row already right:
re-running a sweep changes nothing and writes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.devices.choices import Connectivity, DeviceState
from apps.devices.connectivity import Changed, emit_changes, push
from apps.devices.models import Device
from apps.profiles.choices import ConnectionType

logger = logging.getLogger(__name__)

DEFAULT_GRANULARITY = timedelta(seconds=15)
# What a recorded policy that is not two positive numbers counts as (the profiles' defaults),
# and the profiles' limits a recorded one is clamped to (apps.profiles.validation).
FALLBACK_POLICY = (60, 3)
MAX_INTERVAL_SECONDS, MAX_MISSED_BEATS = 7 * 24 * 3600, 1000
KEYS = ("interval_seconds", "missed_beats")
UNREADABLE = "provisioning (unreadable: defaults)"


def _recorded_seconds(column: str) -> str:
    """SQL: the policy recorded in ``column`` (provisioning), in seconds. Immutable and never
    failing, as an index expression must be."""
    interval, beats = (f"({column} #> '{{heartbeat,{key}}}')" for key in KEYS)
    return (
        f"COALESCE(CASE WHEN jsonb_typeof({interval}) = 'number' "
        f"AND jsonb_typeof({beats}) = 'number' "
        f"THEN NULLIF(GREATEST(LEAST({interval}::numeric, {MAX_INTERVAL_SECONDS}), 0) "
        f"* GREATEST(LEAST({beats}::numeric, {MAX_MISSED_BEATS}), 0), 0) END, "
        f"{FALLBACK_POLICY[0] * FALLBACK_POLICY[1]})::float8"
    )


# The index expression of ``devices_heartbeat_due`` (migration devices 0007), spelled the same:
# when the next heartbeat of a device with a recorded policy is overdue, as a UTC timestamp
# (``timestamptz + interval`` is not immutable; ``timestamp + interval`` is).
DUE = (
    "((d.last_seen_at AT TIME ZONE 'UTC') "
    f"+ make_interval(secs => {_recorded_seconds('d.provisioning')}))"
)
RECORDED = "d.provisioning ? 'heartbeat'"
# The profile version's policy: one range of ``devices_heartbeat_seen`` per version.
PROFILE_DEADLINE = (
    "(%(now)s - make_interval(secs => "
    "(%(grace)s + v.heartbeat_interval_seconds * v.heartbeat_missed_beats)::float8))"
)

# Four arms, each an index range: overdue -> offline, and (HTTPS profiles only) on time ->
# online, for devices with a recorded policy (one range of ``devices_heartbeat_due``) and for the
# others (one range of ``devices_heartbeat_seen`` per profile version: the LATERAL subquery,
# kept apart by OFFSET 0, is run once per version with that version's deadline as its bound).
# ``locked`` then locks the rows in id order (as the connectivity worker does, so the two never
# deadlock); the UPDATE re-checks each row once locked and skips a device whose connectivity or
# last sighting changed meanwhile (it reconnected, or a heartbeat came in).
SWEEP_SQL = f"""
WITH candidates AS MATERIALIZED (
    SELECT d.id, d.connectivity, d.last_seen_at, %(offline)s AS target
    FROM devices_device d
    WHERE d.state = %(active)s AND {RECORDED}
      AND d.connectivity IN (%(online)s, %(unknown)s) AND {DUE} < %(cutoff)s
  UNION ALL
    SELECT d.id, d.connectivity, d.last_seen_at, %(online)s
    FROM devices_device d JOIN profiles_profileversion v ON v.id = d.profile_version_id
    WHERE d.state = %(active)s AND {RECORDED}
      AND d.connectivity IN (%(offline)s, %(unknown)s) AND {DUE} >= %(cutoff)s
      AND v.connection_type = %(https)s
  UNION ALL
    SELECT d.* FROM profiles_profileversion v CROSS JOIN LATERAL (
        SELECT d.id, d.connectivity, d.last_seen_at, %(offline)s AS target
        FROM devices_device d
        WHERE d.profile_version_id = v.id AND d.state = %(active)s AND NOT ({RECORDED})
          AND d.connectivity IN (%(online)s, %(unknown)s) AND d.last_seen_at < {PROFILE_DEADLINE}
        OFFSET 0) d
  UNION ALL
    SELECT d.* FROM profiles_profileversion v CROSS JOIN LATERAL (
        SELECT d.id, d.connectivity, d.last_seen_at, %(online)s AS target
        FROM devices_device d
        WHERE d.profile_version_id = v.id AND d.state = %(active)s AND NOT ({RECORDED})
          AND d.connectivity IN (%(offline)s, %(unknown)s) AND d.last_seen_at >= {PROFILE_DEADLINE}
        OFFSET 0) d
    WHERE v.connection_type = %(https)s
), locked AS (
    SELECT d.id FROM devices_device d
    WHERE d.id = ANY (ARRAY(SELECT id FROM candidates))
    ORDER BY d.id
    FOR UPDATE OF d
)
UPDATE devices_device d
SET connectivity = c.target
FROM candidates c
WHERE d.id = ANY (ARRAY(SELECT id FROM locked)) AND c.id = d.id AND d.state = %(active)s
  AND d.connectivity = c.connectivity AND d.last_seen_at = c.last_seen_at
RETURNING d.id, d.organization_id, d.serial, c.connectivity, d.connectivity, d.last_seen_at
"""  # noqa: S608 (the f-string holds this module's constant SQL fragments; values are bound)


@dataclass(frozen=True)
class HeartbeatPolicy:
    """A device's heartbeat policy and where it comes from (``provisioning`` or ``profile``)."""

    interval_seconds: int
    missed_beats: int
    source: str

    @property
    def offline_after(self) -> timedelta:
        """Silence after which the sweeper marks the device offline (granularity included)."""
        return timedelta(seconds=self.interval_seconds * self.missed_beats) + granularity()

    @property
    def offline_after_seconds(self) -> int:
        return int(self.offline_after.total_seconds())

    @property
    def source_label(self) -> str:
        return {
            "profile": "its profile version",
            "provisioning": "its provisioning record",
        }.get(self.source, "its provisioning record (unreadable: the defaults)")


def granularity() -> timedelta:
    value = getattr(settings, "TELEMETRY_LAST_SEEN_GRANULARITY", DEFAULT_GRANULARITY)
    return value if isinstance(value, timedelta) else timedelta(seconds=float(value))


def heartbeat_policy(device: Device) -> HeartbeatPolicy:
    """The policy the sweeper applies to ``device`` (the SQL's rules, for display). Reads
    ``device.profile_version``: select it with the device."""
    if "heartbeat" not in (device.provisioning or {}):
        version = device.profile_version
        return HeartbeatPolicy(
            interval_seconds=version.heartbeat_interval_seconds,
            missed_beats=version.heartbeat_missed_beats,
            source="profile",
        )
    recorded = device.provisioning["heartbeat"]
    raw = [recorded.get(key) if isinstance(recorded, dict) else None for key in KEYS]
    values = [float(v) for v in raw if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(values) < len(KEYS):
        return HeartbeatPolicy(*FALLBACK_POLICY, source=UNREADABLE)
    interval = max(min(values[0], MAX_INTERVAL_SECONDS), 0)
    beats = max(min(values[1], MAX_MISSED_BEATS), 0)
    if interval * beats <= 0:
        return HeartbeatPolicy(*FALLBACK_POLICY, source=UNREADABLE)
    return HeartbeatPolicy(
        interval_seconds=int(interval), missed_beats=int(beats), source="provisioning"
    )


@dataclass(frozen=True)
class SweepResult:
    """What one sweep changed, in device id order."""

    offline: list[Changed]
    online: list[Changed]


def sweep_parameters(now: datetime) -> dict[str, Any]:
    """The parameters of ``SWEEP_SQL`` for a sweep at ``now``."""
    grace = granularity()
    return {
        "now": now,
        "grace": grace.total_seconds(),
        # the overdue time of devices_heartbeat_due is a UTC timestamp without a zone
        "cutoff": (now - grace).astimezone(UTC).replace(tzinfo=None),
        "active": DeviceState.ACTIVE.value,
        "online": Connectivity.ONLINE.value,
        "offline": Connectivity.OFFLINE.value,
        "unknown": Connectivity.UNKNOWN.value,
        "https": ConnectionType.HTTPS.value,
    }


@transaction.atomic
def heartbeat_sweep(*, now: datetime | None = None) -> SweepResult:
    """Apply every active device's heartbeat policy at ``now`` (default: the current time) in
    one statement; write a ``device.offline`` / ``device.online`` event per change in the same
    transaction and push the changes to the organizations' open pages after commit."""
    parameters = sweep_parameters(now or timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(SWEEP_SQL, parameters)
        changed = sorted((Changed(*row) for row in cursor.fetchall()), key=lambda c: c.id)
    emit_changes(changed)
    if changed:
        transaction.on_commit(partial(push, changed))
    result = SweepResult(
        offline=[change for change in changed if change.connectivity == Connectivity.OFFLINE],
        online=[change for change in changed if change.connectivity == Connectivity.ONLINE],
    )
    if changed:
        logger.info(
            "heartbeat sweep: %s offline, %s online", len(result.offline), len(result.online)
        )
    return result
