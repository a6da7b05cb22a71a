"""Wellness on the portal's fleet pages: the device page's vitals panel and health badge, and
the fleet list's health column and filter. Context builders only: the fleet views
(``apps.devices.views_fleet``, ``views_fleet_device``) call them and include the templates in
``templates/telemetry/``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from apps.devices.models import Device

from .choices import Health
from .health import alert_health, health_expression, health_q
from .wellness import HeartbeatPolicy, heartbeat_policy

__all__ = ["DeviceWellness", "Vital", "annotate_wellness", "device_wellness", "filter_health"]

# unit suffixes of vitals names (``battery_pct``, ``rssi_dbm``, ``disk_free_mb``...)
UNITS = {
    "pct": "%",
    "dbm": "dBm",
    "db": "dB",
    "mb": "MB",
    "gb": "GB",
    "kb": "kB",
    "c": "°C",
    "v": "V",
    "mv": "mV",
    "ma": "mA",
    "s": "s",
    "ms": "ms",
}
ACRONYMS = {"rssi": "RSSI", "snr": "SNR", "cpu": "CPU", "gps": "GPS", "ram": "RAM"}


@dataclass(frozen=True)
class Vital:
    """One vital of the latest heartbeat, ready to show."""

    name: str
    label: str
    value: str
    unit: str


@dataclass(frozen=True)
class DeviceWellness:
    """What the device page shows about a device's wellness."""

    health: str
    alert_health: str  # what the badge shows if the device comes back online (live pages)
    policy: HeartbeatPolicy
    offline_after: str  # the policy's silence before the sweeper marks it offline, readable
    vitals: list[Vital]
    vitals_at: datetime | None
    uptime: str
    boot: int | None


def annotate_wellness(devices: QuerySet[Device], *, health: str = "") -> QuerySet[Device]:
    """The fleet list's rows with ``health`` and ``alert_health``, narrowed to one health when
    ``health`` is given (``health_q``: index-friendly conditions, not a filter on the CASE)."""
    if health:
        devices = devices.filter(health_q(health))
    return devices.annotate(health=health_expression(), alert_health=alert_health())


def filter_health(value: Any) -> str:
    """A health filter value from the query string: a ``Health`` value, or ``""`` for any."""
    return value if value in Health.values else ""


def device_wellness(device: Device) -> DeviceWellness:
    """Health, heartbeat policy and latest vitals of ``device`` (its ``profile_version``
    selected with it): one query."""
    row = (
        Device.objects.filter(pk=device.pk)
        .annotate(health=health_expression(), alert_health=alert_health())
        .values(
            "health",
            "alert_health",
            "latest__vitals",
            "latest__vitals_at",
            "latest__uptime_s",
            "latest__boot",
        )
        .get()
    )
    policy = heartbeat_policy(device)
    return DeviceWellness(
        health=row["health"],
        alert_health=row["alert_health"],
        policy=policy,
        offline_after=duration(policy.offline_after_seconds),
        vitals=vitals_of(row["latest__vitals"] or {}),
        vitals_at=row["latest__vitals_at"],
        uptime=duration(row["latest__uptime_s"]),
        boot=row["latest__boot"],
    )


def vitals_of(vitals: dict[str, Any]) -> list[Vital]:
    """The heartbeat's vitals by name, each with a readable label and unit."""
    shown = []
    for name in sorted(vitals):
        words = name.split("_")
        unit = UNITS.get(words[-1].lower(), "") if len(words) > 1 else ""
        if unit:
            words = words[:-1]
        label = " ".join(ACRONYMS.get(word.lower(), word) for word in words)
        shown.append(Vital(name, label[:1].upper() + label[1:], number(vitals[name]), unit))
    return shown


def number(value: Any) -> str:
    """A vital's value: integers as such, other numbers to two decimals at most."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def duration(seconds: int | None) -> str:
    """``93784`` -> ``1 d 2 h``: the two largest units, for an uptime."""
    if seconds is None or seconds < 0:
        return ""
    parts: list[str] = []
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size or (size == 1 and not parts):
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts[:2])
