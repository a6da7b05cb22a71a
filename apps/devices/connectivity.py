"""Live connectivity from the devices' status messages, applied a batch at a time.

A device publishes ``devices/<id>/status`` (retained, QoS 1) with ``{"state": "online"}`` when
it connects and leaves ``{"state": "offline"}`` as its last will. ``connectivity_apply`` turns a
batch of such messages into one set-based UPDATE, a domain event per change and, after commit,
one websocket push per organization. The MQTT side (``manage.py connectivity``) acknowledges
the messages only once this has committed, so a crash or a failed write loses nothing: the
broker delivers the unacknowledged messages again and applying them twice changes nothing.

The last message of a device in a batch wins (the broker keeps each device's messages in order
on one subscriber). Messages that are not ``devices/<uuid>/status`` with that JSON are counted
and dropped; unknown devices and retired ones (decommissioned, replaced) are left alone.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from django.db import connection, transaction

from .choices import Connectivity, DeviceState
from .lifecycle import emit_many
from .services import broadcast

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 1024
REPORTED = frozenset({Connectivity.ONLINE.value, Connectivity.OFFLINE.value})
RETIRED = [DeviceState.DECOMMISSIONED.value, DeviceState.REPLACED.value]

# The CTE locks the rows to change in id order, so two workers whose batches share devices
# cannot deadlock, and reads the value being replaced for the event. Rows whose connectivity is
# already the reported one are not touched: no write, no event, no push.
APPLY_SQL = """
WITH incoming (id, connectivity, seen_at) AS (
    SELECT * FROM unnest(%(ids)s::uuid[], %(states)s::text[], %(seen)s::timestamptz[])
), old AS (
    SELECT d.id, d.connectivity FROM devices_device d JOIN incoming i ON i.id = d.id
    WHERE d.connectivity <> i.connectivity AND d.state <> ALL(%(retired)s)
    ORDER BY d.id FOR UPDATE OF d
)
UPDATE devices_device d
SET connectivity = i.connectivity,
    last_seen_at = CASE WHEN i.connectivity = %(online)s
                        THEN GREATEST(d.last_seen_at, i.seen_at) ELSE d.last_seen_at END
FROM old JOIN incoming i ON i.id = old.id
WHERE d.id = old.id
RETURNING d.id, d.organization_id, d.serial, old.connectivity, d.connectivity, d.last_seen_at
"""


@dataclass(frozen=True)
class StatusUpdate:
    """One message from ``devices/<id>/status``, as it arrived."""

    topic: str
    payload: bytes
    received_at: datetime


@dataclass(frozen=True)
class Changed:
    """A device whose connectivity this batch changed."""

    id: uuid.UUID
    organization_id: uuid.UUID
    serial: str
    previous: str
    connectivity: str
    last_seen_at: datetime | None

    def message(self) -> dict[str, Any]:
        """The websocket message the fleet pages read (``static/js/fleet.js``)."""
        return {
            "type": "device.connectivity",
            "id": str(self.id),
            "connectivity": self.connectivity,
            "last_seen_at": self.last_seen_at.isoformat() if self.last_seen_at else None,
        }


@dataclass
class Tally:
    """Running counts for a worker's log: every message is received, then either malformed,
    or ignored (unknown or retired device, no change, superseded in its batch), or changed."""

    received: int = 0
    malformed: int = 0
    changed: int = 0
    refusals: int = 0  # broker refusal reports stored (apps/devices/refusals.py)

    @property
    def ignored(self) -> int:
        return self.received - self.malformed - self.changed


def parse(update: StatusUpdate) -> tuple[uuid.UUID, str] | None:
    """(device id, reported connectivity), or None for anything but a well-formed status."""
    parts = update.topic.split("/")
    if len(parts) != 3 or parts[0] != "devices" or parts[2] != "status":
        return None
    try:
        device_id = uuid.UUID(parts[1])
    except ValueError:
        return None
    if str(device_id) != parts[1] or len(update.payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        document = json.loads(update.payload)
    except ValueError:
        return None
    state = document.get("state") if isinstance(document, dict) else None
    return (device_id, state) if state in REPORTED else None


@transaction.atomic
def connectivity_apply(*, updates: list[StatusUpdate], tally: Tally | None = None) -> list[Changed]:
    """Apply a batch of status messages in one transaction; returns the devices it changed.

    Going online also moves ``last_seen_at`` to the message's arrival (never backwards). Writes
    one ``device.online`` / ``device.offline`` event per change in the same transaction and,
    after commit, pushes the changes to each organization's open pages in one message.
    """
    latest: dict[uuid.UUID, tuple[str, datetime]] = {}
    malformed = 0
    for update in updates:
        parsed = parse(update)
        if parsed is None:
            malformed += 1
            continue
        latest[parsed[0]] = (parsed[1], update.received_at)
    changed = _write(latest)
    _emit(changed)
    transaction.on_commit(partial(push, changed))
    if malformed:
        logger.warning("dropped %s malformed status message(s) of %s", malformed, len(updates))
    if tally is not None:
        tally.received += len(updates)
        tally.malformed += malformed
        tally.changed += len(changed)
    return changed


def _write(latest: dict[uuid.UUID, tuple[str, datetime]]) -> list[Changed]:
    if not latest:
        return []
    parameters: dict[str, Any] = {
        "ids": list(latest),
        "states": [state for state, _ in latest.values()],
        "seen": [seen for _, seen in latest.values()],
        "retired": RETIRED,
        "online": Connectivity.ONLINE.value,
    }
    with connection.cursor() as cursor:
        cursor.execute(APPLY_SQL, parameters)
        rows = cursor.fetchall()
    return sorted((Changed(*row) for row in rows), key=lambda change: change.id)


def emit_changes(changed: list[Changed]) -> None:
    """Write one ``device.online`` / ``device.offline`` event per change in the caller's
    transaction: the same events whoever changed the connectivity (this worker, or the heartbeat
    sweeper ``apps.telemetry.wellness``)."""
    _emit(changed)


def _emit(changed: list[Changed]) -> None:
    for state in (Connectivity.ONLINE, Connectivity.OFFLINE):
        emit_many(
            f"device.{state.value}",
            [
                (change.organization_id, str(change.id), _payload(change))
                for change in changed
                if change.connectivity == state
            ],
        )


def _payload(change: Changed) -> dict[str, Any]:
    last_seen = change.last_seen_at.isoformat() if change.last_seen_at else None
    return {
        "id": str(change.id),
        "serial": change.serial,
        "from": change.previous,
        "to": change.connectivity,
        "last_seen_at": last_seen,
    }


def push(changed: list[Changed]) -> None:
    """One websocket message per organization for the whole batch (a broker restart brings
    thousands of devices back at once; one push each would flood the channel layer)."""
    by_organization: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for change in changed:
        by_organization[change.organization_id].append(change.message())
    for organization_id, messages in by_organization.items():
        broadcast(organization_id, {"type": "batch", "messages": messages})
