"""Health and throughput of the ingest workers, kept in Redis for the portal and ``/metrics``.

Each worker (``manage.py ingest``) keeps its own counters in a ``WorkerStats`` and publishes
them about once a second as one JSON document under a key that expires after
``WORKER_TTL_SECONDS``: a worker that dies (SIGKILL, lost host) disappears from the snapshot by
itself. A sorted set indexes the workers by the time of their last report, so ``snapshot()``
reads a handful of keys instead of scanning Redis.

Redis only mirrors the numbers: nothing here is a source of truth, and a Redis outage never
stops ingest (the worker logs it and carries on).

``snapshot()`` -> ``{"generated_at", "workers": [<worker>...], "totals": {...}}`` where each
worker is the document below and ``totals`` sums them: ``workers``, ``messages_per_second``,
``messages``, ``stored``, ``duplicates``, ``dead_letters``, ``dead_letters_by_reason``,
``batches``, ``batch_size_last`` (largest among workers), ``batch_size_avg`` (over all
batches), ``latency_ms_avg``, ``lag_ms`` (the largest last lag), ``last_batch_at`` (newest).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings

from .types import BatchResult

__all__ = ["WORKER_TTL_SECONDS", "WorkerStats", "redis_client", "snapshot"]

logger = logging.getLogger(__name__)

WORKER_TTL_SECONDS = 30
RATE_WINDOW_SECONDS = 60
PUBLISH_EVERY_SECONDS = 1.0
ERROR_LOG_EVERY_SECONDS = 60.0

_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    """One client per process (redis-py pools its connections), short timeouts: stats must
    never hold up a batch."""
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
    return _client


def _prefix() -> str:
    # The cache's key prefix separates test runs (one per test database) from a running
    # `make run` on the same Redis.
    return str(settings.CACHES["default"].get("KEY_PREFIX") or "fleetops") + ":ingest:"


def _index_key() -> str:
    return _prefix() + "workers"


def _worker_key(name: str) -> str:
    return _prefix() + "worker:" + name


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat() if timestamp else None


class WorkerStats:
    """One worker's counters since it started, and a per-second history for its 1-minute
    message rate. Updated by the worker's main thread only."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.started_at = time.time()
        self.state = "starting"
        self.connected = False
        self.connected_at: float | None = None  # the last CONNACK (unix time)
        self.messages = self.stored = self.duplicates = self.dead_letters = 0
        self.batches = self.uplinks = self.database_errors = 0
        self.by_reason: dict[str, int] = {}
        self.batch_size_last = 0
        self.latency_total = self.latency_last = self.lag_last = 0.0
        self.last_batch_at: float | None = None
        self.per_second: deque[list[int]] = deque()  # [unix second, messages]
        self.published_at = 0.0
        self.error_logged_at = 0.0

    def record_batch(self, *, size: int, result: BatchResult, latency: float, lag: float) -> None:
        """A batch of ``size`` MQTT messages committed in ``latency`` seconds; ``lag`` is the
        age of its oldest message when it committed."""
        now = time.time()
        self.messages += size
        self._add(result)
        self.batches += 1
        self.batch_size_last = size
        self.latency_last, self.lag_last = latency, lag
        self.latency_total += latency
        self.last_batch_at = now
        second = int(now)
        if self.per_second and self.per_second[-1][0] == second:
            self.per_second[-1][1] += size
        else:
            self.per_second.append([second, size])
        while self.per_second and self.per_second[0][0] <= second - RATE_WINDOW_SECONDS:
            self.per_second.popleft()

    def record_uplinks(self, count: int) -> None:
        self.uplinks += count

    def _add(self, result: BatchResult) -> None:
        self.stored += result.stored
        self.duplicates += result.duplicates
        self.dead_letters += result.dead_lettered
        for reason, count in result.by_reason.items():
            self.by_reason[reason] = self.by_reason.get(reason, 0) + count

    def rate(self, now: float | None = None) -> float:
        """Messages per second over the last minute (or since the start, when younger)."""
        now = time.time() if now is None else now
        window = min(float(RATE_WINDOW_SECONDS), max(now - self.started_at, 1.0))
        since = now - window
        # a bucket counts when any part of its second is inside the window
        return sum(count for second, count in self.per_second if second + 1 > since) / window

    def document(self) -> dict[str, Any]:
        """What the worker publishes (and ``snapshot()`` returns for it)."""
        now = time.time()
        return {
            "name": self.name,
            "host": self.host,
            "pid": self.pid,
            "state": self.state,
            "connected": self.connected,
            "started_at": _iso(self.started_at),
            "connected_at": _iso(self.connected_at),
            "updated_at": _iso(now),
            "last_batch_at": _iso(self.last_batch_at),
            "messages_per_second": round(self.rate(now), 2),
            "messages": self.messages,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "dead_letters": self.dead_letters,
            "dead_letters_by_reason": dict(sorted(self.by_reason.items())),
            "batches": self.batches,
            "batch_size_last": self.batch_size_last,
            "batch_size_avg": round(self.messages / self.batches, 1) if self.batches else 0.0,
            "latency_ms_last": round(self.latency_last * 1000, 1),
            "latency_ms_avg": (
                round(self.latency_total * 1000 / self.batches, 1) if self.batches else 0.0
            ),
            "lag_ms": round(self.lag_last * 1000, 1),
            "uplinks": self.uplinks,
            "database_errors": self.database_errors,
        }

    def publish(self, *, force: bool = False) -> None:
        """Write the document to Redis (about once a second unless ``force``)."""
        now = time.monotonic()
        if not force and now - self.published_at < PUBLISH_EVERY_SECONDS:
            return
        self.published_at = now
        try:
            pipe = redis_client().pipeline(transaction=False)
            pipe.set(_worker_key(self.name), json.dumps(self.document()), ex=WORKER_TTL_SECONDS)
            pipe.zadd(_index_key(), {self.name: time.time()})
            pipe.execute()
        except redis.RedisError as error:
            if now - self.error_logged_at >= ERROR_LOG_EVERY_SECONDS:
                self.error_logged_at = now
                logger.warning("cannot publish the worker's stats to Redis: %s", error)

    def withdraw(self) -> None:
        """Remove this worker from the snapshot (a clean stop)."""
        try:
            pipe = redis_client().pipeline(transaction=False)
            pipe.delete(_worker_key(self.name))
            pipe.zrem(_index_key(), self.name)
            pipe.execute()
        except redis.RedisError as error:
            logger.warning("cannot remove the worker's stats from Redis: %s", error)


def workers() -> list[dict[str, Any]]:
    """The documents of the workers that reported within ``WORKER_TTL_SECONDS``, by name."""
    client = redis_client()
    horizon = time.time() - WORKER_TTL_SECONDS
    client.zremrangebyscore(_index_key(), "-inf", horizon)
    names = [_text(name) for name in client.zrangebyscore(_index_key(), horizon, "+inf")]
    if not names:
        return []
    documents = client.mget([_worker_key(name) for name in sorted(names)])
    return [json.loads(document) for document in documents if document]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def snapshot() -> dict[str, Any]:
    """Every live worker's stats and their totals (see the module docstring)."""
    found = workers()
    return {
        "generated_at": datetime.now(tz=UTC).isoformat(),
        "workers": found,
        "totals": totals(found),
    }


def totals(found: list[dict[str, Any]]) -> dict[str, Any]:
    by_reason: dict[str, int] = {}
    for worker in found:
        for reason, count in worker["dead_letters_by_reason"].items():
            by_reason[reason] = by_reason.get(reason, 0) + count
    messages = sum(worker["messages"] for worker in found)
    batches = sum(worker["batches"] for worker in found)
    latency = sum(worker["latency_ms_avg"] * worker["batches"] for worker in found)
    last = [worker["last_batch_at"] for worker in found if worker["last_batch_at"]]
    return {
        "workers": len(found),
        "messages_per_second": round(sum(w["messages_per_second"] for w in found), 2),
        "messages": messages,
        "stored": sum(worker["stored"] for worker in found),
        "duplicates": sum(worker["duplicates"] for worker in found),
        "dead_letters": sum(worker["dead_letters"] for worker in found),
        "dead_letters_by_reason": dict(sorted(by_reason.items())),
        "batches": batches,
        "batch_size_last": max((worker["batch_size_last"] for worker in found), default=0),
        "batch_size_avg": round(messages / batches, 1) if batches else 0.0,
        "latency_ms_avg": round(latency / batches, 1) if batches else 0.0,
        "lag_ms": max((worker["lag_ms"] for worker in found), default=0.0),
        "last_batch_at": max(last, default=None),
        "uplinks": sum(worker["uplinks"] for worker in found),
    }
