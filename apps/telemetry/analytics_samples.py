"""Raw samples and latest values of one device, for the API, its CSV export and the charts.

Every read starts from ``access_telemetry_device`` (404 outside the actor's telemetry scope)
and then filters on the device and a ``ts`` range: the primary-key index of the range's
partitions only.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from apps.core.actors import Actor
from apps.devices.models import Device

from .analytics import parse_metric
from .analytics_series import telemetry_devices
from .choices import SampleKind
from .models import LatestValues, TelemetrySample

__all__ = [
    "KIND_NAMES",
    "access_telemetry_device",
    "latest_document",
    "metric_columns",
    "sample_csv",
    "sample_list",
]

KIND_NAMES: dict[int, str] = {
    int(SampleKind.TELEMETRY): "telemetry",
    int(SampleKind.HEARTBEAT): "heartbeat",
}
CSV_CHUNK = 2000
MAX_COLUMNS = 50


def access_telemetry_device(*, actor: Actor, device_id: Any) -> Device:
    """The device whose telemetry ``actor`` may read; Http404 otherwise (or malformed)."""
    try:
        pk = uuid.UUID(str(device_id))
    except (TypeError, ValueError, AttributeError):
        raise Http404("No such device.") from None
    device = telemetry_devices(actor).filter(pk=pk).first()
    if device is None:
        raise Http404("No such device.")
    return device


def sample_list(
    *, device: Device, start: datetime, end: datetime, kind: int | None = None
) -> QuerySet[TelemetrySample]:
    """The device's samples in ``[start, end)``, oldest first (callers paginate)."""
    rows = TelemetrySample.objects.filter(device_id=device.pk, ts__gte=start, ts__lt=end)
    return rows.filter(kind=kind) if kind is not None else rows


def metric_columns(values: Sequence[str]) -> list[str]:
    """``metric`` parameters (repeated or comma-separated) as validated metric names."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    for name in names:
        parse_metric(name)
    return list(dict.fromkeys(names))[:MAX_COLUMNS]


def sample_csv(
    *, device: Device, start: datetime, end: datetime, kind: int | None, columns: list[str]
) -> Iterator[list[str]]:
    """CSV rows of the device's samples, header first, read through a server-side cursor in
    chunks (an export of any size never sits in memory). A named metric column holds the
    value when the sample's kind is the metric's (``vitals.x`` for heartbeats)."""
    metrics = [parse_metric(name) for name in columns]
    yield ["ts", "kind", "boot", "seq", "idx", "received_at", *columns, "metrics"]
    rows = (
        sample_list(device=device, start=start, end=end, kind=kind)
        .order_by("ts", "kind", "boot", "seq", "idx")
        .values_list("ts", "kind", "boot", "seq", "idx", "received_at", "metrics")
    )
    for ts, sample_kind, boot, seq, idx, received_at, values in rows.iterator(CSV_CHUNK):
        cells = [
            _cell(values.get(metric.key)) if metric.kind == sample_kind else ""
            for metric in metrics
        ]
        yield [
            _iso(ts),
            KIND_NAMES.get(sample_kind, str(sample_kind)),
            str(boot),
            str(seq),
            str(idx),
            _iso(received_at),
            *cells,
            json.dumps(values, sort_keys=True, separators=(",", ":")),
        ]


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def latest_document(device: Device) -> dict[str, Any]:
    """The device's latest values (empty when it never reported)."""
    latest = LatestValues.objects.filter(device=device).first()
    if latest is None:
        return {
            "device": device.pk,
            "metrics": {},
            "metrics_at": None,
            "vitals": {},
            "vitals_at": None,
            "uptime_s": None,
            "boot": None,
            "updated_at": None,
        }
    return {
        "device": device.pk,
        "metrics": latest.metrics,
        "metrics_at": latest.metrics_at,
        "vitals": latest.vitals,
        "vitals_at": latest.vitals_at,
        "uptime_s": latest.uptime_s,
        "boot": latest.boot,
        "updated_at": latest.updated_at,
    }
