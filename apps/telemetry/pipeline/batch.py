"""``process_batch``: a batch of raw uplink messages in, stored rows and dead letters out.

In one transaction: sort the messages out (topic, device, size, JSON, counters, timestamps,
content: ``messages``), write the new sample and event rows (``writer``: one COPY, de-duplicated
only when needed), dead-letter the refused messages with their raw bytes, then, for the rows
stored for the first time only (``effects``): latest values, last-seen, alert evaluation and one
``telemetry.batch`` domain event per organization; after commit, the changed latest values are
pushed to the browsers. A bad message never stops the others; a database error raises and
nothing is committed (the worker acknowledges nothing and gets the batch again).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.devices import uplinks

from ..choices import DeadLetterReason as Reason
from ..live import push_latest
from ..types import BatchResult, Incoming
from . import dead_letter_writer, effects, messages, writer
from .caches import DeviceInfo, Schema, caches
from .effects import Accepted

__all__ = ["Outcome", "Refusal", "Routed", "process_batch", "run"]


@dataclass(slots=True)
class Refusal:
    """A message the pipeline refused, before it becomes a dead letter."""

    incoming: Incoming
    info: DeviceInfo | None
    reason: str
    detail: str


@dataclass
class Outcome:
    result: BatchResult
    refused: list[Refusal] = field(default_factory=list)
    pushed: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Limits:
    """What a batch checks messages against (read once per batch, not per message)."""

    samples_window: messages.Window
    events_window: messages.Window
    max_bytes: int
    max_samples: int


def _limits(now: datetime) -> Limits:
    lower, upper = now - settings.TELEMETRY_MAX_AGE, now + settings.TELEMETRY_MAX_FUTURE
    covered = caches.covered()
    return Limits(
        messages.Window(lower, upper, covered["telemetry_sample"]),
        messages.Window(lower, upper, covered["telemetry_device_event"]),
        settings.MQTT_MAX_MESSAGE_BYTES,
        min(settings.TELEMETRY_MAX_SAMPLES_PER_MESSAGE, 32_767),  # idx is a smallint
    )


def _accept(
    incoming: Incoming, info: DeviceInfo, schema: Schema, kind: str, limits: Limits
) -> Accepted:
    document, boot, seq = messages.open_document(incoming, limits.max_bytes)
    head = (info.id, boot, seq, incoming.received_at)
    key = (incoming.topic, boot, seq)
    if kind == "telemetry":
        window, most = limits.samples_window, limits.max_samples
        rows = messages.telemetry_rows(document, head, schema, info.strict, window, most)
        return Accepted(incoming, info, key, False, rows, [])
    if kind == "heartbeat":
        rows = messages.heartbeat_rows(document, head, limits.samples_window)
        return Accepted(incoming, info, key, True, rows, [])
    rows = messages.event_rows(document, head, limits.events_window)
    return Accepted(incoming, info, key, False, [], rows)


@dataclass(slots=True)
class Routed:
    """A message for another feature (``apps.devices.uplinks``), parsed, device checked."""

    incoming: Incoming
    info: DeviceInfo
    handler: uplinks.Handler
    uplink: uplinks.Uplink


def _route(
    incoming: Incoming, route: tuple[str, str, str], infos: dict[str, DeviceInfo], limits: Limits
) -> Routed | Refusal:
    key, subtopic, _ = route
    info = infos.get(key)
    found = uplinks.handler_for(subtopic)
    try:
        info = messages.check_device(info, key)
        document = messages.open_object(incoming, limits.max_bytes)
        if found is None:  # unregistered since the topic was parsed: not for anyone now
            raise messages.Refused(Reason.BAD_TOPIC, f"no feature takes {subtopic[:200]!r}")
    except messages.Refused as refused:
        return Refusal(incoming, info, refused.reason, refused.detail)
    uplink = uplinks.Uplink(
        info.id,
        info.organization_id,
        info.state,
        subtopic,
        document,
        incoming.received_at,
        incoming.source,
    )
    return Routed(incoming, info, found[1], uplink)


def sort_out(batch: Sequence[Incoming], now: datetime) -> list[Accepted | Routed | Refusal]:
    """Each message, in batch order, as the rows it stores, the feature it is for or the reason
    it is refused."""
    topics = [messages.parse_topic(incoming.topic) for incoming in batch]
    routes = [
        messages.parse_routed(incoming.topic) if topic is None else None
        for incoming, topic in zip(batch, topics, strict=True)
    ]
    keys = {topic[0] for topic in topics if topic is not None}
    infos = caches.lookup(keys | {route[0] for route in routes if route is not None})
    schemas = {key: caches.schema(info) for key, info in infos.items() if key in keys}
    limits = _limits(now)
    sorted_out: list[Accepted | Routed | Refusal] = []
    for incoming, topic, route in zip(batch, topics, routes, strict=True):
        if topic is None:
            if route is not None:
                sorted_out.append(_route(incoming, route, infos, limits))
                continue
            detail = f"not devices/<id>/telemetry|heartbeat|events: {incoming.topic[:200]!r}"
            sorted_out.append(Refusal(incoming, None, Reason.BAD_TOPIC.value, detail))
            continue
        key = topic[0]
        info = infos.get(key)
        try:
            info = messages.check_device(info, key)
            sorted_out.append(_accept(incoming, info, schemas[key], topic[1], limits))
        except messages.Refused as refused:
            sorted_out.append(Refusal(incoming, info, refused.reason, refused.detail))
    return sorted_out


def _rows(accepted: list[Accepted]) -> tuple[list[Any], list[Any], bool]:
    """All the rows to write, and whether the batch repeats a message (a redelivery within the
    batch: its rows are then left out after their first occurrence)."""
    repeats = len({item.key for item in accepted}) < len(accepted)
    if not repeats:
        return (
            [r for i in accepted for r in i.samples],
            [r for i in accepted for r in i.events],
            False,
        )
    unique_samples: dict[tuple[Any, ...], Any] = {}
    unique_events: dict[tuple[Any, ...], Any] = {}
    for item in accepted:
        for row in item.samples:
            unique_samples.setdefault(row[:6], row)
        for row in item.events:
            unique_events.setdefault(row[:4], row)
    return list(unique_samples.values()), list(unique_events.values()), True


def _write(accepted: list[Accepted]) -> list[Accepted]:
    """Write the rows; returns the messages that stored something, each keeping only the rows
    stored now (the others were there already)."""
    samples, events, repeats = _rows(accepted)
    stored_samples = writer.write(writer.SAMPLES, samples)
    stored_events = writer.write(writer.EVENTS, events)
    if not repeats and len(stored_samples) == len(samples) and len(stored_events) == len(events):
        return accepted
    new = {id(row) for row in stored_samples} | {id(row) for row in stored_events}
    for item in accepted:
        item.samples = [row for row in item.samples if id(row) in new]
        item.events = [row for row in item.events if id(row) in new]
    return [item for item in accepted if item.samples or item.events]


def run(batch: Sequence[Incoming], now: datetime) -> Outcome:
    """Everything ``process_batch`` does except writing the dead letters and the push (the
    caller's choice: a replay updates the dead letter it replays). Call inside a transaction."""
    outcome = Outcome(result=BatchResult(received=len(batch)))
    accepted: list[Accepted] = []
    routed: list[Routed] = []
    for item in sort_out(batch, now):
        kind = type(item)
        if kind is Accepted:
            accepted.append(item)  # type: ignore[arg-type]
        elif kind is Routed:
            routed.append(item)  # type: ignore[arg-type]
        else:
            outcome.refused.append(item)  # type: ignore[arg-type]
    stored = _write(accepted)
    result = outcome.result
    result.duplicates = len(accepted) - len(stored)
    outcome.pushed = effects.apply(stored, now, result)
    if routed:
        _hand_over(routed, outcome)
    return outcome


def _hand_over(routed: list[Routed], outcome: Outcome) -> None:
    """Each feature's messages to its handler, in batch order; what it refuses is dead-lettered
    (a reason of its own is kept in the detail, under the ``refused`` reason)."""
    by_handler: dict[uplinks.Handler, list[Routed]] = {}
    for item in routed:
        by_handler.setdefault(item.handler, []).append(item)
    for handler, items in by_handler.items():
        of_uplink = {id(item.uplink): item for item in items}
        refused = handler([item.uplink for item in items])
        for uplink, reason, detail in refused:
            item = of_uplink[id(uplink)]
            if reason not in Reason.values:
                reason, detail = Reason.REFUSED.value, f"{reason}: {detail}"
            outcome.refused.append(Refusal(item.incoming, item.info, reason, detail))
        outcome.result.routed += len(items) - len(refused)


def record_dead_letters(refused: list[Refusal], result: BatchResult) -> None:
    """Write the refused messages as dead letters (one statement) and count them. A message
    that is a dead letter already (a redelivery: same topic and bytes) counts as a duplicate."""
    if not refused:
        return
    rows = [
        dead_letter_writer.Row(
            received_at=refusal.incoming.received_at,
            organization_id=refusal.info.organization_id if refusal.info else None,
            device_id=refusal.info.id if refusal.info else None,
            source=refusal.incoming.source,
            topic=refusal.incoming.topic,
            reason=refusal.reason,
            detail=refusal.detail,
            payload=refusal.incoming.payload,
        )
        for refusal in refused
    ]
    for refusal, new in zip(refused, dead_letter_writer.insert(rows), strict=True):
        if not new:
            result.duplicates += 1
            continue
        result.dead_lettered += 1
        result.by_reason[refusal.reason] = result.by_reason.get(refusal.reason, 0) + 1


def process_batch(messages: Sequence[Incoming]) -> BatchResult:
    """Store a batch of uplink messages in one transaction (see the module docstring).

    Returns the counts; refused messages are dead-lettered, never raised. Raises only on
    database errors, with nothing committed."""
    if not messages:
        return BatchResult()
    now = timezone.now()
    try:
        with transaction.atomic():
            outcome = run(messages, now)
            record_dead_letters(outcome.refused, outcome.result)
            if outcome.pushed:
                transaction.on_commit(partial(push_latest, outcome.pushed))
    except Exception:
        caches.forget_partitions()
        raise
    return outcome.result
