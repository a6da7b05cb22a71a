"""Retry timing: exponential backoff with full jitter, and ``Retry-After``.

Full jitter (sleep a uniformly random time between 0 and ``min(cap, base * 2**attempt)``) is what
keeps a fleet from hammering the broker in waves: when a broker restarts, ten thousand devices
lose their connection in the same second, and without jitter they would all come back in the
same second too, and again after every failed attempt."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

MAX_EXPONENT = 60  # 2**60 seconds is already far beyond any cap; avoids float overflow


@dataclass
class Backoff:
    """Delays for successive failed attempts; ``reset()`` after a success."""

    base: float = 1.0
    cap: float = 120.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def ceiling(self) -> float:
        """The longest the next delay can be."""
        return min(self.cap, self.base * 2 ** min(self.attempt, MAX_EXPONENT))

    def next_delay(self) -> float:
        delay = self.rng.uniform(0, self.ceiling())
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


def retry_after_seconds(
    value: str | float | int | None, *, default: float, now: dt.datetime | None = None
) -> float:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date, RFC 9110
    10.2.3) or a JSON ``retry_after``; ``default`` when it is missing or unreadable."""
    if value is None or value == "":
        return default
    if isinstance(value, int | float):
        return max(0.0, float(value))
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    now = now or dt.datetime.now(dt.UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def spread(seconds: float, rng: random.Random, *, fraction: float = 0.5) -> float:
    """``seconds`` plus up to ``fraction`` of it: never sooner than the server asked, and not
    every device of a batch at the same instant."""
    return seconds + rng.uniform(0, seconds * fraction)
