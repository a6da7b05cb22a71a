"""Thin Celery entry points of commands."""

from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from .sweeper import sweep as run_sweep


@shared_task(
    name="commands.sweep",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=3,
    soft_time_limit=120,
    time_limit=150,
    ignore_result=True,
)
def sweep() -> dict[str, int]:
    """Resend unanswered commands that are due, expire and time out the others."""
    swept = run_sweep()
    return {"retried": swept.retried, "expired": swept.expired, "timed_out": swept.timed_out}
