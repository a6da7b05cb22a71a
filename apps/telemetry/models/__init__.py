"""Models of the telemetry app (explicit exports; no wildcard imports)."""

from __future__ import annotations

from .alerts import Alert, AlertCondition, AlertRule
from .notifications import Notification, NotificationChannel, NotificationPreference
from .storage import DeadLetter, DeviceEvent, LatestValues, TelemetrySample

__all__ = [
    "Alert",
    "AlertCondition",
    "AlertRule",
    "DeadLetter",
    "DeviceEvent",
    "LatestValues",
    "Notification",
    "NotificationChannel",
    "NotificationPreference",
    "TelemetrySample",
]
