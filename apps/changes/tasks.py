"""Celery entry points of change requests (beat schedule: settings.CELERY_BEAT_SCHEDULE).

No retries: the next beat is the retry, and every run starts from the database's state.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from . import execution

TASK_OPTIONS: dict[str, Any] = {"soft_time_limit": 50, "time_limit": 60, "ignore_result": True}


@shared_task(name="changes.run_due", **TASK_OPTIONS)
def run_due_task() -> int:
    """Execute the scheduled requests that are due."""
    return execution.run_due()


@shared_task(name="changes.expire", **TASK_OPTIONS)
def expire_task() -> int:
    """Mark expired the requests that never ran before their expiry."""
    return execution.expire_due()
