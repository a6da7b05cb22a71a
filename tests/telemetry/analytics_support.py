"""A small fleet with telemetry written straight into the partitioned table (the pipeline has
its own tests), and the reference arithmetic the analytics results are checked against."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection

from apps.accounts.models import Organization
from apps.core.actors import SYSTEM
from apps.devices import groups, services
from apps.devices.choices import GroupKind
from apps.devices.models import Device, DeviceGroup
from apps.profiles.models import DeviceProfile, ProfileVersion

TELEMETRY, HEARTBEAT = 1, 2


def base_time() -> datetime:
    """01:00 UTC today: inside today's partition, which the migration created."""
    now = datetime.now(tz=UTC)
    return now.replace(hour=1, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Row:
    device: Device
    ts: datetime
    metrics: dict[str, Any]
    kind: int = TELEMETRY
    boot: int = 1
    seq: int = 1
    idx: int = 0


def insert(rows: Iterable[Row]) -> None:
    values = [
        (
            row.device.pk,
            row.ts,
            row.kind,
            row.boot,
            row.seq,
            row.idx,
            row.ts,
            json.dumps(row.metrics),
        )
        for row in rows
    ]
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO telemetry_sample (device_id, ts, kind, boot, seq, idx, received_at,"
            " metrics) VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
            values,
        )


def make_version(organization: Organization, name: str) -> ProfileVersion:
    profile = DeviceProfile.objects.create(
        organization=organization, name=name, slug=name.lower().replace(" ", "-")
    )
    schema = {
        "metrics": [
            {"name": "temperature", "type": "float", "unit": "°C"},
            {"name": "door_open", "type": "bool"},
            {"name": "mode", "type": "string"},
        ]
    }
    return ProfileVersion.objects.create(profile=profile, number=1, telemetry_schema=schema)


def register(
    version: ProfileVersion, organization: Organization, serial: str, **fields: Any
) -> Device:
    return services.device_register(
        actor=SYSTEM, organization=organization, profile_version=version, serial=serial, **fields
    )


@dataclass
class Fleet:
    devices: dict[str, Device]
    sensor: ProfileVersion
    meter: ProfileVersion
    lobby: DeviceGroup  # static: a1, r1
    eu: DeviceGroup  # dynamic: tags_any eu -> a1, a2


def make_fleet(tree: dict[str, Organization]) -> Fleet:
    sensor = make_version(tree["acme"], "Sensor")
    meter = make_version(tree["acme"], "Meter")
    devices = {
        "a1": register(
            sensor, tree["acme"], "SN-A1", name="Lobby", tags=["eu"], latitude=48.85, longitude=2.35
        ),
        "a2": register(sensor, tree["acme"], "SN-A2", tags=["eu"], latitude=48.1, longitude=2.9),
        "r1": register(
            meter, tree["retail"], "SN-R1", site=tree["store"], latitude=-33.9, longitude=151.2
        ),
        "h1": register(meter, tree["hospital"], "SN-H1", latitude=-33.2, longitude=-70.6),
        "g1": register(make_version(tree["globex"], "Robot"), tree["globex"], "GX-1"),
    }
    lobby = groups.group_create(actor=SYSTEM, organization=tree["acme"], name="Lobby")
    groups.group_add_devices(
        actor=SYSTEM, group=lobby, device_ids=[devices["a1"].pk, devices["r1"].pk]
    )
    eu = groups.group_create(
        actor=SYSTEM,
        organization=tree["acme"],
        name="EU",
        kind=GroupKind.DYNAMIC,
        filter={"tags_any": ["eu"]},
    )
    return Fleet(devices=devices, sensor=sensor, meter=meter, lobby=lobby, eu=eu)


# --- reference arithmetic (what PostgreSQL computes, in the same float operations) --------------


def percentile(values: Sequence[float], fraction: float) -> float:
    """percentile_cont: linear interpolation between the two nearest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    first = math.floor(position)
    low = ordered[first]
    if first + 1 >= len(ordered):
        return low
    return low + (ordered[first + 1] - low) * (position - first)


def reference(samples: Sequence[tuple[tuple[datetime, int, int, int], float]]) -> dict[str, Any]:
    """Every aggregate of one bucket's (sort key, value) samples."""
    values = [value for _, value in samples]
    return {
        "count": len(values),
        "min": min(values),
        "max": max(values),
        "avg": sum(values) / len(values),
        "sum": sum(values),
        "last": max(samples)[1],
        "p50": percentile(values, 0.5),
        "p90": percentile(values, 0.9),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
    }


def minutes(start: datetime, *offsets: float) -> list[datetime]:
    return [start + timedelta(minutes=offset) for offset in offsets]


def new_id() -> uuid.UUID:
    return uuid.uuid4()
