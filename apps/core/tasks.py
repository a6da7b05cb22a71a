"""Thin Celery entry points for the outbox (the rows are the truth; messages only wake)."""

from __future__ import annotations

import math
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from . import events

DISPATCH_BUDGET = timedelta(seconds=45)  # below the soft time limit, so a batch ends cleanly
DISPATCH_BATCH = 50
SWEEP_MAX_WAKEUPS = 8  # a large backlog is spread over several workers


@shared_task(name="core.dispatch_outbox", soft_time_limit=55, time_limit=60, ignore_result=True)
def dispatch_outbox() -> int:
    """Deliver due outbox rows until none is left or the time budget is spent.

    When the budget runs out with work left, it wakes another dispatcher instead of waiting for
    the sweeper.
    """
    deadline = timezone.now() + DISPATCH_BUDGET
    total = 0
    while timezone.now() < deadline:
        claimed = events.dispatch(limit=DISPATCH_BATCH, deadline=deadline)
        total += claimed
        if claimed == 0:
            return total
    if events.due_deliveries().exists():
        events.wake_dispatcher()
    return total


@shared_task(name="core.sweep_outbox", soft_time_limit=20, time_limit=30, ignore_result=True)
def sweep_outbox() -> int:
    """Periodic safety net: wake dispatchers for rows that are due or whose lease expired.

    Returns how many wake-ups it sent (one per batch of due rows, at most a few).
    """
    cap = DISPATCH_BATCH * SWEEP_MAX_WAKEUPS
    due = events.due_deliveries()[:cap].count()
    wakeups = math.ceil(due / DISPATCH_BATCH)
    for _ in range(wakeups):
        events.wake_dispatcher()
    return wakeups
