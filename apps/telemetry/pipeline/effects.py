"""What newly stored rows cause, in the batch's transaction: latest values, last-seen, alert
evaluation and one ``telemetry.batch`` domain event per organization. Duplicates (rows that
were already stored) cause nothing: they never reach this module.

``telemetry.batch`` payload: ``{"messages", "samples", "events", "devices", "first_ts",
"last_ts"}``: the organization's messages stored by this batch, their sample and event rows,
how many devices sent them and the oldest and newest device timestamp among them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from apps.devices.lifecycle import emit_many

from ..alerting import evaluate_batch
from ..types import BatchResult, Incoming, StoredEvent, StoredSample
from . import latest
from .caches import DeviceInfo

__all__ = ["BATCH_EVENT", "Accepted", "apply"]

BATCH_EVENT = "telemetry.batch"
Row = tuple[Any, ...]


@dataclass(slots=True)
class Accepted:
    """A message that passed every check, with the rows it stores."""

    incoming: Incoming
    info: DeviceInfo
    key: tuple[str, int, int]  # (topic, boot, seq): the message's identity
    heartbeat: bool
    samples: list[Row]
    events: list[Row]


class _Organization:
    """One organization's share of the batch, for its ``telemetry.batch`` event."""

    __slots__ = ("devices", "events", "first", "last", "messages", "samples")

    def __init__(self, first: datetime, last: datetime) -> None:
        self.messages = self.samples = self.events = self.devices = 0
        self.first, self.last = first, last

    def payload(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "samples": self.samples,
            "events": self.events,
            "devices": self.devices,
            "first_ts": self.first.isoformat(),
            "last_ts": self.last.isoformat(),
        }


class _Tally:
    """One pass over the stored messages, a device at a time, gathering what each effect
    needs (grouped by the device's cached facts, whose identity hashes faster than its id)."""

    def __init__(self, stored: list[Accepted]) -> None:
        self.telemetry: dict[uuid.UUID, list[Row]] = {}
        self.heartbeats: dict[uuid.UUID, list[Row]] = {}
        self.seen: dict[uuid.UUID, datetime] = {}
        self.organization_of: dict[uuid.UUID, uuid.UUID] = {}
        self.organizations: dict[uuid.UUID, _Organization] = {}
        self.samples: list[StoredSample] = []
        self.events: list[StoredEvent] = []
        devices: dict[int, list[Accepted]] = {}
        for item in stored:
            devices.setdefault(id(item.info), []).append(item)
        for items in devices.values():
            self._device(items[0].info, items)

    def _device(self, info: DeviceInfo, items: list[Accepted]) -> None:
        telemetry = [row for item in items if not item.heartbeat for row in item.samples]
        heartbeats = [row for item in items if item.heartbeat for row in item.samples]
        events = [row for item in items for row in item.events]
        if telemetry:
            self.telemetry[info.id] = telemetry
        if heartbeats:
            self.heartbeats[info.id] = heartbeats
        self.seen[info.id] = max(item.incoming.received_at for item in items)
        self.organization_of[info.id] = info.organization_id
        stamps = [row[1] for rows in (telemetry, heartbeats, events) for row in rows]
        first, last = min(stamps), max(stamps)
        entry = self.organizations.get(info.organization_id)
        if entry is None:
            entry = self.organizations[info.organization_id] = _Organization(first, last)
        entry.messages += len(items)
        entry.samples += len(telemetry) + len(heartbeats)
        entry.events += len(events)
        entry.devices += 1
        entry.first, entry.last = min(entry.first, first), max(entry.last, last)
        self._contract(info, telemetry, heartbeats, events)

    def _contract(
        self, info: DeviceInfo, telemetry: list[Row], heartbeats: list[Row], events: list[Row]
    ) -> None:
        organization, profile, state = info.organization_id, info.profile_id, info.state
        for rows in (telemetry, heartbeats):
            for device, ts, kind, boot, seq, idx, received, metrics, _ in rows:
                self.samples.append(
                    StoredSample(
                        device, organization, profile, state, kind, ts, boot, seq, idx,
                        metrics, received,
                    )
                )  # fmt: skip
        for device, ts, boot, seq, received, type_, severity, message, data in events:
            self.events.append(
                StoredEvent(
                    device, organization, profile, state, ts, boot, seq, type_, severity,
                    message, data, received,
                )
            )  # fmt: skip


def apply(stored: list[Accepted], now: datetime, result: BatchResult) -> dict[uuid.UUID, Any]:
    """Run the effects of the newly stored messages; returns the latest values to push after
    commit ({device id: {"organization_id", "ts", "metrics", "metrics_at", "vitals",
    "vitals_at"}})."""
    tally = _Tally(stored)
    result.stored = len(tally.samples) + len(tally.events)
    result.devices = len(tally.seen)
    if not stored:
        return {}
    pushed = latest.upsert_latest(tally.telemetry, tally.heartbeats)
    latest.touch_last_seen(tally.seen, settings.TELEMETRY_LAST_SEEN_GRANULARITY)
    result.alerts_opened, result.alerts_resolved = evaluate_batch(tally.samples, tally.events, now)
    for device_id, values in pushed.items():
        values["organization_id"] = str(tally.organization_of[device_id])
    emit_many(
        BATCH_EVENT,
        [
            (organization_id, str(organization_id), entry.payload())
            for organization_id, entry in sorted(tally.organizations.items())
        ],
        subject_type="accounts.organization",
    )
    return pushed
