"""Live telemetry for open device pages: push a device's new latest values to its watchers.

A browser showing a device's charts opens ``/ws/telemetry/devices/<id>/``
(``consumers.DeviceTelemetryConsumer``), which joins the Channels group
``telemetry.device.<id>`` and records itself in a Redis sorted set of watchers (member
``"<device id> <channel name>"``, score: when it expires). The socket refreshes its entry while
it stays open and removes it when it closes; an entry whose socket died without closing expires
by itself after ``WATCH_TTL_SECONDS``.

``push_latest`` runs in the ingest worker after each batch commits. It reads the set of watched
devices at most once a second per process (``TELEMETRY_LIVE_WATCH_CACHE_SECONDS``), so a fleet
nobody watches costs one small Redis read a second and nothing per batch; it sends only the
devices someone watches.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from .models import LatestValues

__all__ = [
    "WATCH_TTL_SECONDS",
    "device_group",
    "push_latest",
    "unwatch",
    "watch",
    "watched_devices",
]

logger = logging.getLogger(__name__)

WATCH_TTL_SECONDS = 90
WATCH_REFRESH_SECONDS = 30
MESSAGE_TYPE = "telemetry.latest"

_client: redis.Redis | None = None
_cache: tuple[float, frozenset[str]] = (0.0, frozenset())


def device_group(device_id: uuid.UUID | str) -> str:
    return f"telemetry.device.{device_id}"


def _redis() -> redis.Redis:
    """One client per process with short timeouts: a push must never hold up ingest."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
    return _client


def _key() -> str:
    # The cache's key prefix keeps test runs (one per test database) and `make run` apart.
    prefix = settings.CACHES["default"].get("KEY_PREFIX") or "fleetops"
    return f"{prefix}:telemetry:watched"


def watch(device_id: uuid.UUID | str, channel_name: str) -> None:
    """Record (or refresh) one socket watching one device; drops expired entries."""
    now = time.time()
    pipeline = _redis().pipeline(transaction=False)
    pipeline.zadd(_key(), {f"{device_id} {channel_name}": now + WATCH_TTL_SECONDS})
    pipeline.zremrangebyscore(_key(), "-inf", now)
    pipeline.execute()


def unwatch(device_id: uuid.UUID | str, channel_name: str) -> None:
    _redis().zrem(_key(), f"{device_id} {channel_name}")


def watched_devices(*, fresh: bool = False) -> frozenset[str]:
    """Ids of the devices some open socket watches, read from Redis at most once a second
    per process (``fresh`` reads now)."""
    global _cache
    read_at, devices = _cache
    now = time.monotonic()
    if fresh or now - read_at >= getattr(settings, "TELEMETRY_LIVE_WATCH_CACHE_SECONDS", 1.0):
        members: list[bytes] = _redis().zrangebyscore(_key(), time.time(), "+inf")  # type: ignore[assignment]
        devices = frozenset(member.split(b" ", 1)[0].decode() for member in members)
        _cache = (now, devices)
    return devices


def push_latest(latest: Mapping[uuid.UUID, dict[str, Any]]) -> int:
    """Send each watched device's new latest values to its sockets; returns how many devices
    were pushed. ``latest`` maps device ids to ``{"organization_id", "ts", "metrics",
    "vitals"}`` (the pipeline's contract). Never raises: a push is a convenience, the charts
    also read the API."""
    try:
        watched = watched_devices()
        targets = {key: value for key, value in latest.items() if str(key) in watched}
        if not targets:
            return 0
        messages = _messages(targets)
        async_to_sync(_send)(messages)
        return len(messages)
    except Exception:
        logger.warning("could not push live telemetry", exc_info=True)
        return 0


def _messages(targets: Mapping[uuid.UUID, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """One message per device. ``metrics_at`` and ``vitals_at`` tell a chart when each part
    changed (a heartbeat does not make the last temperature new): taken from the values when
    the pipeline sends them, else read for these (watched) devices only, in one query."""
    missing = [key for key, value in targets.items() if "metrics_at" not in value]
    stamps: dict[Any, tuple[datetime | None, datetime | None]] = {}
    if missing:
        rows = LatestValues.objects.filter(device_id__in=missing)
        stamps = {
            row[0]: row[1:] for row in rows.values_list("device_id", "metrics_at", "vitals_at")
        }
    messages = []
    for device_id, value in targets.items():
        metrics_at, vitals_at = stamps.get(device_id, (None, None))
        data = {
            "type": MESSAGE_TYPE,
            "device": str(device_id),
            "ts": value.get("ts"),
            "metrics_at": value.get("metrics_at", _iso(metrics_at)),
            "vitals_at": value.get("vitals_at", _iso(vitals_at)),
            "metrics": value.get("metrics", {}),
            "vitals": value.get("vitals", {}),
        }
        messages.append((device_group(device_id), {"type": MESSAGE_TYPE, "data": data}))
    return messages


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def _send(messages: list[tuple[str, dict[str, Any]]]) -> None:
    layer = get_channel_layer()
    if layer is None:  # no CHANNEL_LAYERS: nothing listens
        return
    await asyncio.gather(*(layer.group_send(group, message) for group, message in messages))
