"""Device messages beyond telemetry, heartbeats and events, routed to the feature they are for.

A feature registers a handler for a topic filter under ``devices/<id>/`` (``commands/+/result``,
``config/reported``) from its ``AppConfig.ready``. The ingest worker subscribes to every
registered filter (shared subscription, like telemetry) and, in the same batch transaction as
the telemetry it stores, hands each handler the batch's parsed messages for it; the messages
are acknowledged after that transaction commits. So a handler runs at least once per message:
it must be idempotent (a redelivered result changes nothing the first one did not).

A handler returns the messages it refuses, each with a reason and a detail: they become dead
letters (inspectable, replayable) like refused telemetry. Anything it raises rolls the whole
batch back (the worker retries it): raise only for database errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "Handler",
    "Uplink",
    "UplinkRefused",
    "handler_for",
    "register",
    "topic_filters",
    "unregister",
]


@dataclass(slots=True)
class Uplink:
    """One routed message: the device it came from (known, in service) and its JSON object."""

    device_id: uuid.UUID
    organization_id: uuid.UUID
    device_state: str
    subtopic: str  # relative to devices/<id>/, e.g. "commands/<command id>/result"
    document: dict[str, Any]
    received_at: datetime
    source: str  # "mqtt" or "https"


class UplinkRefused(Exception):
    """Raised by a handler's own helpers for one message (the handler returns it refused)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


Handler = Callable[[list[Uplink]], list[tuple[Uplink, str, str]]]

_ROUTES: dict[str, tuple[tuple[str, ...], Handler]] = {}


def register(name: str, topic_filter: str, handler: Handler) -> None:
    """Route ``devices/<id>/<topic_filter>`` (``+`` matches one level) to ``handler``."""
    levels = tuple(topic_filter.split("/"))
    if not levels or "#" in levels or any(not level for level in levels):
        raise ValueError(f"not a topic filter of single levels: {topic_filter!r}")
    _ROUTES[name] = (levels, handler)


def unregister(name: str) -> None:
    _ROUTES.pop(name, None)


def topic_filters() -> list[str]:
    """Every registered filter, relative to ``devices/<id>/``."""
    return sorted("/".join(levels) for levels, _ in _ROUTES.values())


def handler_for(subtopic: str) -> tuple[str, Handler] | None:
    """The (name, handler) a message's topic under ``devices/<id>/`` is routed to, if any."""
    parts = subtopic.split("/")
    for name, (levels, handler) in _ROUTES.items():
        if len(levels) == len(parts) and all(
            level in ("+", part) for level, part in zip(levels, parts, strict=True)
        ):
            return name, handler
    return None
