"""The pipeline's data contracts, shared by the ingest worker, the pipeline, alerting and the
live push. Plain dataclasses: no Django import, cheap to build by the hundred thousand."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["BatchResult", "Incoming", "StoredEvent", "StoredSample"]


@dataclass(slots=True)
class Incoming:
    """One raw uplink message as it arrived: MQTT (``ref`` = the worker's message id) or the
    HTTPS device API (``ref`` = the queued ``UplinkMessage`` id)."""

    topic: str  # devices/<uuid>/telemetry | heartbeat | events
    payload: bytes
    received_at: datetime
    source: str = "mqtt"  # apps.telemetry.choices.Source
    ref: Any = None


@dataclass(slots=True)
class StoredSample:
    """A sample the pipeline stored for the first time (duplicates never get here)."""

    device_id: uuid.UUID
    organization_id: uuid.UUID
    profile_id: uuid.UUID
    device_state: str  # apps.devices.choices.DeviceState value
    kind: int  # apps.telemetry.choices.SampleKind
    ts: datetime
    boot: int
    seq: int
    idx: int
    metrics: dict[str, Any]
    received_at: datetime


@dataclass(slots=True)
class StoredEvent:
    """A device event the pipeline stored for the first time."""

    device_id: uuid.UUID
    organization_id: uuid.UUID
    profile_id: uuid.UUID
    device_state: str
    ts: datetime
    boot: int
    seq: int
    type: str
    severity: str
    message: str
    data: dict[str, Any] | None
    received_at: datetime


@dataclass(slots=True)
class BatchResult:
    """What one ``process_batch`` call did (counted by the worker, shown on the ops page)."""

    received: int = 0
    stored: int = 0  # new sample and event rows
    routed: int = 0  # messages handed to another feature (apps.devices.uplinks) and taken
    duplicates: int = 0  # messages already stored (a redelivery)
    dead_lettered: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    devices: int = 0
    alerts_opened: int = 0
    alerts_resolved: int = 0
