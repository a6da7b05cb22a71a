"""Reads of the fleet dashboard (actor-scoped, a fixed number of queries whatever the fleet's
size): health and connectivity counts, firmware versions, open alerts by severity, the message
rate, the metrics the fleet reports, and device locations gathered into map cells.

Every count is over the devices of an organization's subtree that the actor may view.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db.models import Avg, CharField, Count, F, IntegerField, Max, Min, Q, QuerySet, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Floor
from django.utils import timezone

from apps.accounts.models import Organization
from apps.core.actors import Actor
from apps.core.models import Event
from apps.core.scoping import organization_ids_under
from apps.devices.models import Device
from apps.profiles.models import ProfileVersion

from . import ingest_stats
from .choices import AlertStatus, Severity
from .health import health_counts
from .models import Alert, LatestValues

__all__ = [
    "FleetSummary",
    "MapCell",
    "chart_metrics",
    "fleet_devices",
    "fleet_summary",
    "map_cells",
    "map_extent",
    "zoom_for",
]

FIRMWARE_ROWS = 8
RATE_WINDOW = timedelta(minutes=5)
MAX_CELLS = 400
MAX_VERSIONS = 50
LATEST_SAMPLE = 50  # devices whose latest values tell which metrics the fleet reports
NUMERIC_TYPES = ("float", "int", "bool")


@dataclass(frozen=True)
class FleetSummary:
    devices: int
    health: dict[str, int]  # every Health value
    firmware: list[tuple[str, int]]  # the most common versions ("" not reported), then "other"
    alerts: dict[str, int] | None  # open alerts per severity (None: no alert.view here)
    messages_per_minute: float | None  # the subtree's stored messages (None: no event.view)
    ingest: dict[str, Any] | None  # every worker's totals, for platform staff only


@dataclass(frozen=True)
class MapCell:
    latitude: float  # the mean position of the cell's devices
    longitude: float
    devices: int
    online: int
    device_id: str | None  # the device, when the cell holds one
    label: str


def fleet_devices(actor: Actor, organization: Organization) -> QuerySet[Device]:
    """Devices of ``organization``'s subtree that ``actor`` may view."""
    return Device.objects.for_actor(actor, "view").filter(
        organization__in=organization_ids_under([organization.path])
    )


def fleet_summary(*, actor: Actor, organization: Organization) -> FleetSummary:
    """Everything the dashboard counts: one query per figure."""
    devices = fleet_devices(actor, organization).order_by()
    health = health_counts(devices)
    return FleetSummary(
        devices=sum(health.values()),
        health=health,
        firmware=_firmware(devices, sum(health.values())),
        alerts=_alerts(actor, organization),
        messages_per_minute=_message_rate(actor, organization),
        ingest=ingest_stats.snapshot()["totals"] if actor.is_platform_staff else None,
    )


def _firmware(devices: QuerySet[Device], total: int) -> list[tuple[str, int]]:
    rows = list(
        devices.values_list("firmware_version")
        .annotate(count=Count("pk"))
        .order_by("-count", "firmware_version")
        .values_list("firmware_version", "count")[:FIRMWARE_ROWS]
    )
    other = total - sum(count for _, count in rows)
    return [*rows, ("other", other)] if other > 0 else rows


def _alerts(actor: Actor, organization: Organization) -> dict[str, int] | None:
    if not actor.has_perm("alert.view", organization.path):
        return None
    counted = dict(
        Alert.objects.for_actor(actor, "view")
        .filter(organization__in=organization_ids_under([organization.path]))
        .exclude(status=AlertStatus.RESOLVED)
        .order_by()
        .values_list("severity")
        .annotate(count=Count("pk"))
        .values_list("severity", "count")
    )
    return {severity: counted.get(severity, 0) for severity in Severity.values}


def _message_rate(actor: Actor, organization: Organization) -> float | None:
    """Messages stored per minute over the last five, from the pipeline's ``telemetry.batch``
    events of the subtree (one per organization and batch, read off the organization index)."""
    if not actor.has_perm("event.view", organization.path):
        return None
    since = timezone.now() - RATE_WINDOW
    total = (
        Event.objects.for_actor(actor, "view")
        .filter(
            organization__in=organization_ids_under([organization.path]),
            created_at__gte=since,
            type="telemetry.batch",
        )
        .aggregate(
            total=Sum(Cast(KeyTextTransform("messages", "payload"), output_field=IntegerField()))
        )["total"]
    )
    return round((total or 0) / (RATE_WINDOW.total_seconds() / 60), 1)


def chart_metrics(actor: Actor, organization: Organization) -> list[dict[str, str]]:
    """The numeric and boolean metrics the profiles of the subtree's devices declare: first
    those some of its devices reported lately (a sample of their latest values), numbers before
    booleans; the chart opens on the first. Two queries."""
    devices = fleet_devices(actor, organization)
    versions = ProfileVersion.objects.filter(pk__in=devices.values("profile_version")).values_list(
        "telemetry_schema", flat=True
    )[:MAX_VERSIONS]
    reported: set[str] = set()
    for metrics in LatestValues.objects.filter(device__in=devices).values_list(
        "metrics", flat=True
    )[:LATEST_SAMPLE]:
        reported.update(metrics or {})
    found: dict[str, tuple[bool, bool, str]] = {}
    for schema in versions:
        for metric in (schema or {}).get("metrics", []):
            kind, name = metric.get("type", "float"), metric.get("name")
            if kind in NUMERIC_TYPES and name:
                found.setdefault(
                    name, (name not in reported, kind == "bool", metric.get("unit", ""))
                )
    ordered = sorted(found.items(), key=lambda item: (item[1][:2], item[0]))
    return [{"name": name, "unit": unit} for name, (_, _, unit) in ordered]


def cell_degrees(zoom: int) -> float:
    """About a quarter of a map tile at ``zoom``: cells some 64 pixels wide."""
    return 360.0 / (2 ** max(0, min(zoom, 18))) / 4


def map_cells(
    *,
    actor: Actor,
    organization: Organization,
    zoom: int,
    bbox: tuple[float, float, float, float] | None = None,
) -> list[MapCell]:
    """Located devices gathered into grid cells of the zoom level (one GROUP BY, at most
    ``MAX_CELLS`` cells, the fullest first): the map never receives one marker per device of
    a large fleet, and a cell of one device links to it."""
    size = cell_degrees(zoom)
    devices = fleet_devices(actor, organization).filter(
        latitude__isnull=False, longitude__isnull=False
    )
    if bbox is not None:
        south, west, north, east = bbox
        devices = devices.filter(
            latitude__gte=south, latitude__lte=north, longitude__gte=west, longitude__lte=east
        )
    rows = (
        devices.order_by()
        .annotate(row=Floor(F("latitude") / size), column=Floor(F("longitude") / size))
        .values("row", "column")
        .annotate(
            devices=Count("pk"),
            online=Count("pk", filter=Q(connectivity="online")),
            latitude=Avg("latitude"),
            longitude=Avg("longitude"),
            first_id=_min_text("pk"),
            first_serial=_min_text("serial"),
        )
        .order_by("-devices", "row", "column")[:MAX_CELLS]
    )
    return [_cell(row) for row in rows]


def _min_text(field: str) -> Min:
    return Min(Cast(field, output_field=CharField()))


def _cell(row: Mapping[str, Any]) -> MapCell:
    single = row["devices"] == 1
    return MapCell(
        latitude=round(row["latitude"], 6),
        longitude=round(row["longitude"], 6),
        devices=row["devices"],
        online=row["online"],
        device_id=str(uuid.UUID(row["first_id"])) if single else None,
        label=row["first_serial"] if single else f"{row['devices']} devices",
    )


def map_extent(actor: Actor, organization: Organization) -> tuple[float, ...] | None:
    """(south, west, north, east) of the located devices, or None."""
    box = (
        fleet_devices(actor, organization)
        .order_by()
        .aggregate(
            south=Min("latitude"),
            west=Min("longitude"),
            north=Max("latitude"),
            east=Max("longitude"),
        )
    )
    if box["south"] is None:
        return None
    return (box["south"], box["west"], box["north"], box["east"])


def zoom_for(extent: tuple[float, ...] | None) -> int:
    """A zoom level at which the extent spans a few cells across."""
    if extent is None:
        return 2
    span = max(extent[2] - extent[0], extent[3] - extent[1], 0.01)
    return max(1, min(14, int(math.log2(360.0 / span))))
