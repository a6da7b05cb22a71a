"""Small asyncio helpers of the agent: pacing a fleet's connections, racing coroutines, and
sleeping until a stop signal."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any


class ConnectGate:
    """Paces a fleet's connection attempts: at most ``concurrency`` TLS handshakes at a time and
    ``rate`` new attempts per second (so ten thousand devices do not all dial the same second)."""

    def __init__(self, *, concurrency: int, rate: float) -> None:
        self._slots = asyncio.Semaphore(concurrency)
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    async def __aenter__(self) -> None:
        await self._slots.acquire()
        try:
            now = asyncio.get_running_loop().time()
            start = max(now, self._next)
            self._next = start + self._interval
            if start > now:
                await asyncio.sleep(start - now)
        except BaseException:
            self._slots.release()
            raise

    async def __aexit__(self, *exc_info: object) -> None:
        self._slots.release()


def reraise_swallowed_cancellation() -> None:
    """Call after an awaited aiomqtt operation that succeeded. On Python 3.11, the
    ``asyncio.wait_for`` inside aiomqtt returns the result instead of raising CancelledError when
    the broker's answer and a cancellation arrive together (CPython bpo-42130, fixed in 3.12):
    without this check a cancelled sender would carry on, orphaned, on a closing connection."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def first_completed(*coroutines: Coroutine[Any, Any, Any]) -> None:
    """Run ``coroutines`` until the first one ends; cancel the others; re-raise its error."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile; returns whether it is."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
