"""From one raw message to the rows it stores, or to the reason it cannot be stored.

Pure functions (no database): the caller provides the device's facts, its compiled schema and
the accepted time window. A refusal raises ``Refused(reason, detail)``; the caller turns it into
a dead letter. Checks, in order: topic, device (known, in service), size, JSON object, ``boot``
and ``seq``, then per kind the timestamps and the content.

Rows are plain tuples in the tables' column order, so the writer hands them to COPY as they are:

- sample: (device_id, ts, kind, boot, seq, idx, received_at, metrics, extra)
- event:  (device_id, ts, boot, seq, received_at, type, severity, message, data)

Fields of a message outside the ones the protocol defines are kept under ``"@envelope"`` in
``extra`` (samples) or ``data`` (events): unknown fields are never dropped.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson

from apps.devices import uplinks
from apps.devices.choices import DeviceState

from ..choices import DeadLetterReason as Reason
from ..choices import SampleKind
from ..types import Incoming
from .caches import DeviceInfo, Schema
from .flat import normalize_fast

__all__ = [
    "ACCEPTING",
    "EVENT_SEVERITIES",
    "KINDS",
    "MAX_COUNTER",
    "Refused",
    "Window",
    "event_rows",
    "heartbeat_rows",
    "open_object",
    "parse_routed",
    "parse_topic",
    "telemetry_rows",
]

KINDS = ("telemetry", "heartbeat", "events")
ACCEPTING = frozenset({DeviceState.ACTIVE.value, DeviceState.MAINTENANCE.value})
EVENT_SEVERITIES = frozenset({"debug", "info", "warning", "error", "critical"})
MAX_COUNTER = 2**63 - 1
ENVELOPE = "@envelope"
TELEMETRY_KEYS = frozenset({"boot", "seq", "ts", "metrics"})
BATCH_KEYS = frozenset({"boot", "seq", "samples"})
SAMPLE_KEYS = frozenset({"ts", "metrics"})
HEARTBEAT_KEYS = frozenset({"boot", "seq", "ts", "uptime_s", "vitals"})
EVENT_KEYS = frozenset({"boot", "seq", "ts", "type", "severity", "message", "data"})
TELEMETRY = int(SampleKind.TELEMETRY)
HEARTBEAT = int(SampleKind.HEARTBEAT)

Row = tuple[Any, ...]


class Refused(Exception):
    """A message that cannot be stored, with its dead-letter reason and a readable detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = str(reason)  # the plain value: counted per reason, stored as text
        self.detail = detail


class Window:
    """The device timestamps a table accepts: ``[lower, upper]`` and inside a partition."""

    __slots__ = ("covered", "lower", "upper")

    def __init__(self, lower: datetime, upper: datetime, covered: list[tuple[datetime, datetime]]):
        self.lower = lower
        self.upper = upper
        self.covered = covered

    def check(self, ts: datetime) -> None:
        if not self.lower <= ts <= self.upper:
            raise Refused(
                Reason.TIMESTAMP_RANGE,
                f"ts {ts.isoformat()} is outside {self.lower.isoformat()} .. "
                f"{self.upper.isoformat()}",
            )
        for lower, upper in self.covered:
            if lower <= ts < upper:
                return
        raise Refused(Reason.TIMESTAMP_RANGE, f"ts {ts.isoformat()}: no partition holds that day")


@lru_cache(maxsize=65_536)
def parse_topic(topic: str) -> tuple[str, str] | None:
    """(device id, kind) of ``devices/<uuid>/<telemetry|heartbeat|events>``, else None. The id
    is the topic's own text, checked to be a UUID in canonical form (lower case, hyphens)."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "devices" or parts[2] not in KINDS:
        return None
    try:
        device_id = uuid.UUID(parts[1])
    except ValueError:
        return None
    return (parts[1], parts[2]) if str(device_id) == parts[1] else None


def parse_routed(topic: str) -> tuple[str, str, str] | None:
    """(device id, subtopic, route name) of a message for a feature that registered its topic
    (``apps.devices.uplinks``: ``devices/<uuid>/commands/<id>/result``...), else None. Not
    cached: routes may change (tests), and these messages are few next to telemetry."""
    parts = topic.split("/", 2)
    if len(parts) != 3 or parts[0] != "devices":
        return None
    try:
        device_id = uuid.UUID(parts[1])
    except ValueError:
        return None
    route = uplinks.handler_for(parts[2])
    if route is None or str(device_id) != parts[1]:
        return None
    return parts[1], parts[2], route[0]


def open_object(incoming: Incoming, max_bytes: int) -> dict[str, Any]:
    """The message's JSON object (what a routed message must be; telemetry adds counters)."""
    if len(incoming.payload) > max_bytes:
        raise Refused(Reason.OVERSIZED, f"{len(incoming.payload)} bytes (at most {max_bytes})")
    try:
        document = orjson.loads(incoming.payload)
    except orjson.JSONDecodeError as error:
        raise Refused(Reason.MALFORMED_JSON, str(error)) from None
    if b"\\u0000" in incoming.payload:  # PostgreSQL stores no NUL in text or jsonb
        raise Refused(Reason.MALFORMED_JSON, "\\u0000 (NUL) cannot be stored")
    if type(document) is not dict:
        raise Refused(Reason.MALFORMED_JSON, "the payload is not a JSON object")
    return document


def check_device(info: DeviceInfo | None, device_id: str) -> DeviceInfo:
    if info is None:
        raise Refused(Reason.UNKNOWN_DEVICE, f"no device {device_id}")
    if info.state not in ACCEPTING:
        raise Refused(Reason.DEVICE_STATE, f"the device is {info.state}")
    return info


def open_document(incoming: Incoming, max_bytes: int) -> tuple[dict[str, Any], int, int]:
    """The message's JSON object and its ``boot`` and ``seq``."""
    document = open_object(incoming, max_bytes)
    boot, seq = document.get("boot"), document.get("seq")
    if type(boot) is not int or type(seq) is not int:
        raise Refused(Reason.MISSING_COUNTERS, "boot and seq must be integers")
    if not (0 <= boot <= MAX_COUNTER and 0 <= seq <= MAX_COUNTER):
        raise Refused(Reason.MISSING_COUNTERS, "boot and seq must be between 0 and 2^63-1")
    return document, boot, seq


def parse_ts(value: Any, window: Window) -> datetime:
    if type(value) is not str:
        raise Refused(Reason.BAD_TIMESTAMP, "ts must be an ISO 8601 text")
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise Refused(Reason.BAD_TIMESTAMP, f"ts {value[:64]!r} is not ISO 8601") from None
    if ts.tzinfo is None:
        raise Refused(Reason.BAD_TIMESTAMP, f"ts {value[:64]!r} has no UTC offset (add Z)")
    window.check(ts)
    return ts


def _envelope(document: dict[str, Any], known: frozenset[str]) -> dict[str, Any] | None:
    if len(document) <= len(known) and document.keys() <= known:
        return None
    rest = {key: value for key, value in document.items() if key not in known}
    return rest or None


def _metrics(
    raw: Any, schema: Schema, strict: bool, label: str
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    if type(raw) is not dict:
        raise Refused(Reason.SCHEMA, f"{label}metrics must be an object")
    assert schema.compiled is not None
    normalized = normalize_fast(raw, schema.plan, schema.compiled)
    if normalized.errors:
        raise Refused(Reason.SCHEMA, "; ".join(label + error for error in normalized.errors))
    if normalized.unknown and strict:
        unknown = ", ".join(sorted(normalized.unknown))
        raise Refused(Reason.UNKNOWN_METRIC, f"{label}not in the profile's schema: {unknown}")
    return normalized.metrics, normalized.unknown or None


def _extra(unknown: dict[str, Any] | None, envelope: dict[str, Any] | None) -> Any:
    if envelope is None:
        return unknown
    return {**(unknown or {}), ENVELOPE: envelope}


def telemetry_rows(
    document: dict[str, Any],
    head: tuple[uuid.UUID, int, int, datetime],
    schema: Schema,
    strict: bool,
    window: Window,
    max_samples: int,
) -> list[Row]:
    """The sample rows of a telemetry message (one, or one per item of ``samples``)."""
    if schema.compiled is None:
        raise Refused(Reason.SCHEMA, "the profile version's telemetry schema is invalid")
    device_id, boot, seq, received_at = head
    if "samples" not in document:
        ts = parse_ts(document.get("ts"), window)
        metrics, unknown = _metrics(document.get("metrics"), schema, strict, "")
        extra = _extra(unknown, _envelope(document, TELEMETRY_KEYS))
        return [(device_id, ts, TELEMETRY, boot, seq, 0, received_at, metrics, extra)]
    items = document["samples"]
    if type(items) is not list or not items:
        raise Refused(Reason.SCHEMA, "samples must be a non-empty list")
    if len(items) > max_samples:
        raise Refused(Reason.OVERSIZED, f"{len(items)} samples (at most {max_samples})")
    envelope = _envelope(document, BATCH_KEYS)
    rows = []
    for idx, item in enumerate(items):
        label = f"samples[{idx}]."
        if type(item) is not dict:
            raise Refused(Reason.SCHEMA, f"samples[{idx}] must be an object")
        ts = parse_ts(item.get("ts"), window)
        metrics, unknown = _metrics(item.get("metrics"), schema, strict, label)
        own = _envelope(item, SAMPLE_KEYS)
        if own is not None or envelope is not None:
            unknown = _extra(unknown, {**(envelope or {}), **(own or {})})
        rows.append((device_id, ts, TELEMETRY, boot, seq, idx, received_at, metrics, unknown))
    return rows


def _number(value: Any) -> bool:
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))


def heartbeat_rows(
    document: dict[str, Any], head: tuple[uuid.UUID, int, int, datetime], window: Window
) -> list[Row]:
    """The one sample row of a heartbeat: its vitals and ``uptime_s`` as metrics."""
    device_id, boot, seq, received_at = head
    ts = parse_ts(document.get("ts"), window)
    vitals = document.get("vitals", {})
    if type(vitals) is not dict or not all(_number(value) for value in vitals.values()):
        raise Refused(Reason.SCHEMA, "vitals must be a flat object of numbers")
    metrics = dict(vitals)
    if "uptime_s" in document:
        uptime = document["uptime_s"]
        if type(uptime) is not int or not 0 <= uptime <= MAX_COUNTER:
            raise Refused(Reason.SCHEMA, "uptime_s must be a non-negative integer")
        metrics["uptime_s"] = uptime
    extra = _envelope(document, HEARTBEAT_KEYS)
    extra = {ENVELOPE: extra} if extra is not None else None
    return [(device_id, ts, HEARTBEAT, boot, seq, 0, received_at, metrics, extra)]


def event_rows(
    document: dict[str, Any], head: tuple[uuid.UUID, int, int, datetime], window: Window
) -> list[Row]:
    """The device event row of an ``events`` message (``severity`` defaults to ``info``)."""
    device_id, boot, seq, received_at = head
    ts = parse_ts(document.get("ts"), window)
    kind, severity = document.get("type"), document.get("severity", "info")
    message, data = document.get("message", ""), document.get("data")
    if type(kind) is not str or not 0 < len(kind) <= 200:
        raise Refused(Reason.SCHEMA, "type must be a text of 1 to 200 characters")
    if severity not in EVENT_SEVERITIES:
        raise Refused(
            Reason.SCHEMA, f"severity must be one of {', '.join(sorted(EVENT_SEVERITIES))}"
        )
    if type(message) is not str:
        raise Refused(Reason.SCHEMA, "message must be a text")
    if data is not None and type(data) is not dict:
        raise Refused(Reason.SCHEMA, "data must be an object")
    envelope = _envelope(document, EVENT_KEYS)
    if envelope is not None:
        data = {**(data or {}), ENVELOPE: envelope}
    return [(device_id, ts, boot, seq, received_at, kind, severity, message, data)]
