"""The enrollment endpoint's defences, kept in the cache (Redis): rate limits, replay refusal
and the outcome counters. Nothing here touches the database.

- Rate limits are fixed one-minute windows: one counter per source address
  (``ENROLL_RATE_PER_SOURCE``) and one per claim token or factory certificate
  (``ENROLL_RATE_PER_TOKEN``). Each counter is created with its expiry and incremented in one
  MULTI/EXEC round trip (``increment``), so concurrent requests never undercount. A refused
  request still counts: a flood stays refused.
- Replays: a request carries a nonce and a timestamp. The timestamp must be within five minutes
  of the server's clock and the nonce is remembered (``cache.add``, which only one request can
  win) for ten minutes, twice the window, so a captured request can never be played again.
- Every attempt's outcome is counted (``enroll:outcome:<reason>``) for operations dashboards.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone

WINDOW_SECONDS = 60
TIMESTAMP_WINDOW = timedelta(minutes=5)
NONCE_SECONDS = 10 * 60
OUTCOMES_KEY = "enroll:outcomes"


@dataclasses.dataclass(eq=False)  # identity-hashed, as exceptions must be
class Refused(Exception):
    """An enrollment (or device API) request refused: the HTTP status, a stable code, a
    message for the device maker, the field at fault if any, and the counter it goes to."""

    status: int
    code: str
    message: str
    field: str = ""
    reason: str = ""
    retry_after: int | None = None
    extra: dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)
        self.reason = self.reason or self.code

    def __str__(self) -> str:
        return self.message


def source_address(remote_addr: str, forwarded_for: str = "") -> str:
    """The client's address: ``REMOTE_ADDR``, or, behind a trusted proxy, the right-most
    ``X-Forwarded-For`` entry that is not itself a trusted proxy (the left ones are whatever the
    client wrote)."""
    if not is_trusted_proxy(remote_addr) or not forwarded_for:
        return remote_addr
    for candidate in reversed([part.strip() for part in forwarded_for.split(",")]):
        if candidate and not is_trusted_proxy(candidate):
            return candidate if _is_address(candidate) else remote_addr
    return remote_addr


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_trusted_proxy(address: str) -> bool:
    """Whether ``address`` is one of ``DEVICE_TRUSTED_PROXIES`` (addresses or networks)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in settings.DEVICE_TRUSTED_PROXIES:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


# --- rate limits -------------------------------------------------------------------------------


@functools.cache
def process_cache() -> BaseCache:
    """The default cache as one instance for the whole process. ``caches[...]`` gives each
    thread its own, and Django under ASGI runs every request in a thread of its own: through it,
    every enrollment opened a new Redis connection. This instance's connection pool is shared
    by the threads (redis-py pools are thread-safe)."""
    return caches.create_connection(DEFAULT_CACHE_ALIAS)


@receiver(setting_changed)
def _forget_process_cache(*, setting: str, **kwargs: Any) -> None:
    if setting == "CACHES":
        process_cache.cache_clear()


def increment(key: str, timeout: int | None) -> int:
    """Add one to the cache counter ``key`` (created at 0, expiring after ``timeout`` seconds,
    never when None) and return its new value.

    Django's ``add`` + ``incr`` cost three round trips (its ``incr`` first checks that the key
    exists); on the Redis cache this is one: SET NX with the expiry, then INCR, in a MULTI.
    Counters hold plain integers either way, which the cache API reads back as ints."""
    current = process_cache()
    if not isinstance(current, RedisCache):
        current.add(key, 0, timeout=timeout)
        try:
            return int(current.incr(key))
        except ValueError:  # evicted between add and incr: start again
            current.set(key, 1, timeout=timeout)
            return 1
    name = current.make_and_validate_key(key)
    pipeline = current._cache.get_client(name, write=True).pipeline(transaction=True)
    pipeline.set(name, 0, ex=timeout, nx=True)
    pipeline.incr(name)
    return int(pipeline.execute()[1])


def hit(scope: str, key: str, limit: int) -> None:
    """Count one request against ``scope``/``key`` in the current window; ``Refused`` (429,
    with the seconds until the window ends) past ``limit``."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    count = increment(f"enroll:rate:{scope}:{key}:{window}", WINDOW_SECONDS * 2)
    if count > limit:
        retry_after = max(1, int(WINDOW_SECONDS - now % WINDOW_SECONDS))
        raise Refused(
            429,
            "rate_limited",
            f"Too many enrollment attempts for this {scope}; retry in {retry_after} s.",
            reason=f"rate_limited_{scope}",
            retry_after=retry_after,
            extra={"first": "true" if count == limit + 1 else ""},
        )


def limit_source(address: str) -> None:
    hit("source", address or "unknown", settings.ENROLL_RATE_PER_SOURCE)


def limit_token(key: str) -> None:
    hit("token", key, settings.ENROLL_RATE_PER_TOKEN)


# --- replays -----------------------------------------------------------------------------------


def check_fresh(timestamp: datetime, nonce: str, *, now: datetime | None = None) -> None:
    """Refuse a timestamp outside the window or a nonce seen in the last ten minutes (409)."""
    now = now or timezone.now()
    if abs(now - timestamp) > TIMESTAMP_WINDOW:
        raise Refused(
            409,
            "stale_timestamp",
            "The timestamp is more than 5 minutes away from the server's clock "
            f"({now.isoformat(timespec='seconds')}); set the clock and retry with a new nonce.",
            field="timestamp",
        )
    if not process_cache().add(f"enroll:nonce:{nonce}", 1, timeout=NONCE_SECONDS):
        raise Refused(
            409,
            "replayed_nonce",
            "This nonce was already used; every attempt needs a new one.",
            field="nonce",
        )


# --- outcome counters --------------------------------------------------------------------------


def count(outcome: str) -> None:
    """Add one to the counter of ``outcome`` (``enrolled``, ``quarantined``, or a refusal's
    reason). Counters never expire; ``counts()`` reads them."""
    increment(f"{OUTCOMES_KEY}:{outcome}", None)


def counts(outcomes: Iterable[str]) -> dict[str, int]:
    """The counters of ``outcomes`` (0 when never counted)."""
    names = list(outcomes)
    found = process_cache().get_many([f"{OUTCOMES_KEY}:{name}" for name in names])
    return {name: int(found.get(f"{OUTCOMES_KEY}:{name}", 0)) for name in names}
