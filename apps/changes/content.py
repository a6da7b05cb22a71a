"""What an approval binds to (the content hash) and when a request may run (its window)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError

from .models import ChangeRequest

__all__ = ["content_hash", "in_window", "normalize_window"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _moment(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def content_hash(request: ChangeRequest, frozen: Sequence[uuid.UUID] | None = None) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces) of exactly what will run: kind,
    spec, target, resolve_at, run_at, window, expires_at and, when frozen, the sorted ids of
    the devices. Titles and descriptions are not part of it."""
    content: dict[str, Any] = {
        "kind": request.kind,
        "spec": request.spec,
        "target": request.target,
        "resolve_at": request.resolve_at,
        "run_at": _moment(request.run_at),
        "window": request.window,
        "expires_at": _moment(request.expires_at),
    }
    if frozen is not None:
        content["devices"] = sorted(str(pk) for pk in frozen)
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _clock(value: Any, name: str) -> str:
    try:
        return time.fromisoformat(str(value)).strftime("%H:%M")
    except ValueError:
        raise ValidationError({"window": [f"{name} must be a time, HH:MM."]}) from None


def normalize_window(window: Any) -> dict[str, Any] | None:
    """``{"days": ["mon", ...], "start": "HH:MM", "end": "HH:MM", "timezone": "Area/City"}``
    (``days`` optional: every day; ``end`` before ``start`` spans midnight)."""
    if window in (None, {}):
        return None
    if not isinstance(window, dict) or set(window) - {"days", "start", "end", "timezone"}:
        raise ValidationError({"window": ["Keys: days, start, end, timezone."]})
    days = window.get("days") or list(DAYS)
    if not isinstance(days, list) or not set(days) <= set(DAYS) or not days:
        raise ValidationError({"window": [f"days: a list of {', '.join(DAYS)}."]})
    zone = window.get("timezone") or "UTC"
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError({"window": [f"Unknown time zone {zone}."]}) from None
    start, end = _clock(window.get("start"), "start"), _clock(window.get("end"), "end")
    if start == end:
        raise ValidationError({"window": ["start and end must differ."]})
    ordered = [day for day in DAYS if day in days]
    return {"days": ordered, "start": start, "end": end, "timezone": str(zone)}


def in_window(window: dict[str, Any] | None, moment: datetime) -> bool:
    """Whether ``moment`` falls inside the window (a window spanning midnight belongs to the
    day it starts on)."""
    if not window:
        return True
    local = moment.astimezone(ZoneInfo(window["timezone"]))
    now = local.strftime("%H:%M")
    day, previous = DAYS[local.weekday()], DAYS[(local.weekday() - 1) % 7]
    start, end = window["start"], window["end"]
    if start < end:
        return day in window["days"] and start <= now < end
    return (day in window["days"] and now >= start) or (previous in window["days"] and now < end)
