"""Who gets what: the pure decisions of the notification fan-out (no database, no clock).

Every function here takes what it decides on as arguments, so the table of cases in
tests/telemetry/test_notify_policy.py exercises exactly the code the consumer runs.
"""

from __future__ import annotations

import fnmatch
import uuid
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..choices import SEVERITY_RANK, Severity

ALERT_EVENTS = ("alert.opened", "alert.acknowledged", "alert.resolved")
TEST_EVENT = "notification.test"
VERBS = {
    "alert.opened": "Opened",
    "alert.acknowledged": "Acknowledged",
    "alert.resolved": "Resolved",
}


@dataclass(frozen=True)
class AlertNotice:
    """An alert event's payload (the contract H3 emits), read defensively."""

    event_type: str
    alert_id: str
    rule_id: str
    rule_name: str
    device_id: str | None
    device_serial: str
    severity: str
    message: str
    status: str
    opened_at: str
    by: str | None

    @classmethod
    def from_event(cls, event_type: str, payload: dict[str, Any]) -> AlertNotice:
        severity = str(payload.get("severity") or Severity.INFO)
        return cls(
            event_type=event_type,
            alert_id=str(payload.get("alert_id") or ""),
            rule_id=str(payload.get("rule_id") or ""),
            rule_name=str(payload.get("rule_name") or ""),
            device_id=str(payload["device_id"]) if payload.get("device_id") else None,
            device_serial=str(payload.get("device_serial") or ""),
            severity=severity if severity in SEVERITY_RANK else Severity.INFO,
            message=str(payload.get("message") or ""),
            status=str(payload.get("status") or ""),
            opened_at=str(payload.get("opened_at") or ""),
            by=str(payload["by"]).lower() if payload.get("by") else None,
        )

    @property
    def verb(self) -> str:
        return VERBS.get(self.event_type, self.event_type)

    @property
    def subject(self) -> str:
        """What the alert is about: the rule, and the device when there is one."""
        where = f" on {self.device_serial}" if self.device_serial else ""
        return f"{self.rule_name or 'Alert'}{where}"

    @property
    def title(self) -> str:
        """``[MAJOR] Opened: Overheating on SN-001`` (fits Notification.title)."""
        return f"[{self.severity.upper()}] {self.verb}: {self.subject}"[:300]

    def device_uuid(self) -> uuid.UUID | None:
        try:
            return uuid.UUID(self.device_id) if self.device_id else None
        except ValueError:
            return None


def at_least(severity: str, minimum: str) -> bool:
    """Whether ``severity`` is ``minimum`` or more severe (unknown values rank lowest)."""
    return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK.get(minimum, 0)


def zone(name: str) -> ZoneInfo:
    """The named time zone; UTC when the name is unknown (forms validate it beforehand)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def in_quiet_hours(*, start: time | None, end: time | None, timezone: str, at: datetime) -> bool:
    """Whether ``at`` falls in the quiet hours ``[start, end)`` of the given time zone.

    A window whose end is before its start runs across midnight (22:00-07:00). No window, or
    an empty one (start == end), is never quiet.
    """
    if start is None or end is None or start == end:
        return False
    local = at.astimezone(zone(timezone)).time().replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end


@dataclass(frozen=True)
class Preference:
    """A user's notification choices (the model's defaults when they never saved any)."""

    portal: bool = True
    email: bool = True
    min_severity: str = Severity.WARNING
    quiet_start: time | None = None
    quiet_end: time | None = None
    timezone: str = "UTC"


@dataclass(frozen=True)
class Decision:
    portal: bool
    email: bool


def decide(
    *, preference: Preference, notice: AlertNotice, user_email: str, at: datetime
) -> Decision:
    """What one recipient gets for one alert event.

    Nothing below their minimum severity, nothing for a change they made themselves; the
    portal records the rest when they want it; email too, except in their quiet hours, during
    which only critical alerts are emailed.
    """
    if not at_least(notice.severity, preference.min_severity):
        return Decision(portal=False, email=False)
    if notice.by is not None and notice.by == user_email.lower():
        return Decision(portal=False, email=False)
    quiet = in_quiet_hours(
        start=preference.quiet_start,
        end=preference.quiet_end,
        timezone=preference.timezone,
        at=at,
    )
    email = preference.email and (notice.severity == Severity.CRITICAL or not quiet)
    return Decision(portal=preference.portal, email=email)


def channel_wants(
    *, patterns: list[str], min_severity: str, event_type: str, severity: str
) -> bool:
    """Whether a channel receives an event: its severity floor and its event patterns (an
    empty pattern list means every alert event)."""
    if not at_least(severity, min_severity):
        return False
    return not patterns or any(fnmatch.fnmatchcase(event_type, p) for p in patterns)
