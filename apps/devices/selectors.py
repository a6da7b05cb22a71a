"""Reads of the fleet registry (always actor-scoped)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from apps.core.actors import Actor
from apps.core.models import AuditLog, Event, Job, JobItem
from apps.core.scoping import organization_ids_under

from .models import Device, DeviceGroup, Transfer
from .selection import selection_q

DEVICE_TYPE = "devices.device"
MAX_CHAIN = 20  # replacement hops followed in each direction
# Events that repeat an audit row of the same change; the timeline shows the audit row (it
# names the actor). Every other device event (effects, later telemetry, alerts...) is shown.
AUDITED_EVENTS = (
    "device.registered",
    "device.updated",
    "device.state_changed",
    "device.transfer_created",
    "device.transfer_accepted",
    "device.transfer_rejected",
    "device.transfer_cancelled",
    "device.claimed",
    "device.replaced",
    "device.enrolled",
)
# Credential actions whose timeline line needs no detail.
CREDENTIAL_SUMMARIES = {
    "device.certificate_renew": "Certificate renewed",
    "device.certificate_revoke": "Certificate revoked",
    "device.credentials_revoke": "Credentials revoked",
    "device.credentials_revoked": "Credentials revoked",
    "device.token_create": "Device token created",
    "device.token_revoke": "Device token revoked",
}


# The profile version's JSON schemas are not shown in device lists: loading them for each row
# was a third of a list request's time (bench/registry.py).
PROFILE_VERSION_BULK = tuple(
    f"profile_version__{name}"
    for name in (
        "attributes_schema",
        "telemetry_schema",
        "command_catalog",
        "configuration_schema",
        "hardware_revisions",
        "capabilities",
    )
)


def device_list(*, actor: Actor, filters: dict[str, Any] | None = None) -> QuerySet[Device]:
    """Devices the actor may view matching ``filters`` (the selection language), newest first."""
    groups = DeviceGroup.objects.for_actor(actor, "view")
    return (
        Device.objects.for_actor(actor, "view")
        .filter(selection_q(filters or {}, groups=groups))
        .select_related("profile_version")
        .defer(*PROFILE_VERSION_BULK)
        .order_by("-id")
    )


def transfer_list(*, actor: Actor, direction: str = "") -> QuerySet[Transfer]:
    """Transfers sent from (``outgoing``) or to (``incoming``) organizations where the actor may
    view devices; both when ``direction`` is empty."""
    outgoing = Transfer.objects.for_actor(actor, "view")  # scoped by the sender
    if actor.is_platform_staff:
        incoming = Transfer.objects.all()
    else:
        paths = actor.paths_for("device.view")
        incoming = (
            Transfer.objects.filter(to_organization__in=organization_ids_under(paths))
            if paths
            else Transfer.objects.none()
        )
    if direction == "outgoing":
        return outgoing
    if direction == "incoming":
        return incoming
    return outgoing | incoming


def job_list(*, actor: Actor) -> QuerySet[Job]:
    return Job.objects.for_actor(actor, "view")


def job_items(*, job: Job, ok: bool | None = None) -> QuerySet[JobItem]:
    items = JobItem.objects.filter(job=job)
    return items if ok is None else items.filter(ok=ok)


# --- timeline ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimelineEntry:
    time: datetime
    kind: str  # "audit" or "event"
    action: str
    actor_label: str
    summary: str
    changes: dict[str, Any]
    device_id: str
    relation: str  # "self", "predecessor" or "successor"
    id: uuid.UUID  # the audit row's or the event's id: breaks ties between equal times

    @property
    def key(self) -> tuple[datetime, uuid.UUID]:
        """The keyset position: newest first by time, then by id (uuid7s of both tables)."""
        return (self.time, self.id)


def replacement_chain(device: Device) -> dict[str, str]:
    """``{device id: relation}`` for the device, its predecessors and its successors."""
    chain = {str(device.pk): "self"}
    current: Any = device.pk
    for _ in range(MAX_CHAIN):  # predecessors: devices this one replaced
        current = Device.objects.filter(replaced_by=current).values_list("pk", flat=True).first()
        if current is None or str(current) in chain:
            break
        chain[str(current)] = "predecessor"
    current = device.replaced_by_id
    for _ in range(MAX_CHAIN):
        if current is None or str(current) in chain:
            break
        chain[str(current)] = "successor"
        current = Device.objects.filter(pk=current).values_list("replaced_by", flat=True).first()
    return chain


def device_timeline(
    *,
    actor: Actor,
    device: Device,
    before: datetime | None = None,
    before_id: uuid.UUID | None = None,
    limit: int = 50,
) -> list[TimelineEntry]:
    """Everything that happened to the device (and its replacement chain), newest first: audit
    rows and the events no audit row repeats. Keyset by ``(time, id)``: pass the last entry's
    ``time`` and ``id`` as ``before`` and ``before_id`` for the next page, so entries sharing a
    timestamp are never split or repeated across pages (``before`` alone skips the rest of a
    tie). The actor must already have access to ``device``."""
    chain = replacement_chain(device)
    since = _older_than(before, before_id)
    audits = (
        AuditLog.objects.filter(since, object_type=DEVICE_TYPE, object_id__in=list(chain))
        .order_by("-created_at", "-id")
        .values("id", "created_at", "action", "actor_label", "changes", "object_id")[:limit]
    )
    domain_events = (
        Event.objects.filter(since, subject_type=DEVICE_TYPE, subject_id__in=list(chain))
        .exclude(type__in=AUDITED_EVENTS)
        .order_by("-created_at", "-id")
        .values("id", "created_at", "type", "payload", "subject_id")[:limit]
    )
    entries = [_from_audit(row, chain) for row in audits]
    entries += [_from_event(row, chain) for row in domain_events]
    # Python orders UUIDs by their integer value, PostgreSQL by their bytes: the same order
    entries.sort(key=lambda entry: entry.key, reverse=True)
    return entries[:limit]


def _older_than(before: datetime | None, before_id: uuid.UUID | None) -> Q:
    if before is None:
        return Q()
    if before_id is None:
        return Q(created_at__lt=before)
    return Q(created_at__lt=before) | Q(created_at=before, id__lt=before_id)


def _from_audit(row: dict[str, Any], chain: dict[str, str]) -> TimelineEntry:
    return TimelineEntry(
        time=row["created_at"],
        kind="audit",
        action=row["action"],
        actor_label=row["actor_label"],
        summary=summarize(row["action"], row["changes"]),
        changes=row["changes"],
        device_id=row["object_id"],
        relation=chain[row["object_id"]],
        id=row["id"],
    )


def _from_event(row: dict[str, Any], chain: dict[str, str]) -> TimelineEntry:
    return TimelineEntry(
        time=row["created_at"],
        kind="event",
        action=row["type"],
        actor_label="",
        summary=summarize(row["type"], row["payload"]),
        changes=row["payload"],
        device_id=row["subject_id"],
        relation=chain[row["subject_id"]],
        id=row["id"],
    )


def summarize(action: str, changes: dict[str, Any]) -> str:
    """One human line for a timeline entry."""
    state = changes.get("state")
    if action == "device.transition" and isinstance(state, list):
        return f"{changes.get('transition')}: {state[0]} → {state[1]}"
    if action == "device.register":
        return f"Registered ({changes.get('state', [None, ''])[1]})"
    if action == "device.update":
        return "Changed " + ", ".join(sorted(changes))
    if action.startswith("device.transfer."):
        verb = action.rsplit(".", 1)[1]
        sides = f"{changes.get('from_organization')} → {changes.get('to_organization')}"
        return f"Transfer {verb}: {sides}"
    if action == "device.replace":
        return f"Replacement: {changes.get('predecessor')} → {changes.get('successor')}"
    if action == "device.enroll":
        method = str(changes.get("method", "")).replace("_", " ")
        return f"Enrolled by {method} ({changes.get('outcome')}, {changes.get('state')})"
    if action == "device.enroll_refused":
        return f"Enrollment refused: {changes.get('reason')}"
    return CREDENTIAL_SUMMARIES.get(action, action)


def parse_before(value: str) -> datetime | None:
    from django.utils.dateparse import parse_datetime

    return parse_datetime(value) if value else None


__all__ = [
    "TimelineEntry",
    "device_list",
    "device_timeline",
    "job_items",
    "job_list",
    "replacement_chain",
    "transfer_list",
]
