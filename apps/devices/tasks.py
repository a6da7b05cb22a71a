"""Thin Celery entry points of the registry: load by id, call one service."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import services


@shared_task(
    name="devices.run_bulk_transition",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
    soft_time_limit=1800,
    time_limit=1900,
    acks_late=True,
    ignore_result=True,
)
def run_bulk_transition(*, job_id: str) -> dict[str, Any]:
    """Run (or resume: the job keeps a cursor) one bulk transition job."""
    job = services.bulk_transition_run(job_id=job_id)
    return {"status": job.status, "processed": job.processed}


@shared_task(
    name="devices.publish_downlinks",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=5,
    soft_time_limit=300,
    time_limit=330,
    ignore_result=True,
)
def publish_downlinks() -> int:
    """Publish what the downlink outbox holds (``apps.devices.downlinks``), batch by batch."""
    from .downlinks import publish_pending

    total = 0
    while True:
        published = publish_pending()
        total += published
        if published < 5000:
            return total
