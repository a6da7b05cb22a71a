"""Public identifiers: time-ordered UUIDs (version 7), friendly to B-tree indexes at fleet size.

RFC 9562 method 1: the 48-bit millisecond and the 12-bit ``rand_a`` counter together form one
60-bit tick that only ever rises within a process (a counter overflow borrows the next
millisecond), so ids made here, one at a time or in batches, are strictly increasing.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_tick = 0
_HEAD = (0x7 << 76) | (0x2 << 62)  # version 7, RFC 4122 variant
_RANDOM_B = (1 << 62) - 1


def _reserve(count: int) -> int:
    """The first of ``count`` consecutive ticks (millisecond << 12 | counter) for this caller."""
    global _last_tick
    with _lock:
        now = (time.time_ns() // 1_000_000) << 12 | os.urandom(1)[0]  # random start, room to count
        first = max(now, _last_tick + 1)
        _last_tick = first + count - 1
    return first


def _value(tick: int, random_b: int) -> int:
    return _HEAD | (tick >> 12 & ((1 << 48) - 1)) << 80 | (tick & 0xFFF) << 64 | random_b


def uuid7() -> uuid.UUID:
    """One version 7 UUID, greater than every id this process made before."""
    return uuid.UUID(int=_value(_reserve(1), int.from_bytes(os.urandom(8), "big") & _RANDOM_B))


def uuid7_hex_batch(count: int) -> list[str]:
    """``count`` increasing version 7 UUIDs as the 32 hex digits PostgreSQL reads (COPY), from
    one reservation and one random read."""
    first = _reserve(count)
    random = os.urandom(8 * count)
    bits = (int.from_bytes(random[8 * i : 8 * i + 8], "big") & _RANDOM_B for i in range(count))
    return [f"{_value(first + index, b):032x}" for index, b in enumerate(bits)]
