"""Public identifiers: time-ordered UUIDs (version 7), friendly to B-tree indexes at fleet size."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_milliseconds = 0
_counter = 0
_COUNTER_BITS = 12  # RFC 9562 method 1: rand_a holds a counter, so ids rise within a millisecond


def uuid7() -> uuid.UUID:
    """An RFC 9562 version 7 UUID: 48-bit Unix milliseconds, a 12-bit counter that makes ids
    made by one process strictly increasing, then 62 random bits."""
    global _last_milliseconds, _counter
    with _lock:
        milliseconds = time.time_ns() // 1_000_000
        if milliseconds <= _last_milliseconds:
            _counter += 1
            if _counter >= 1 << _COUNTER_BITS:  # counter exhausted: borrow the next millisecond
                _last_milliseconds += 1
                _counter = 0
            milliseconds = _last_milliseconds
        else:
            _last_milliseconds = milliseconds
            _counter = int.from_bytes(os.urandom(1), "big")  # random start, room to count up
        counter = _counter
    value = (milliseconds & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= counter << 64
    value |= 0x2 << 62  # RFC 4122 variant
    value |= int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    return uuid.UUID(int=value)
