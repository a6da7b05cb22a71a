"""Celery entry point of bulk imports: load the job by id, run (or resume) it."""

from __future__ import annotations

import uuid

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import imports

MAX_RETRIES = 5
# A million rows take minutes; the run is resumable, so a hard kill costs at most one chunk.
SOFT_TIME_LIMIT = 2 * 3600


@shared_task(
    name="devices.run_import",
    bind=True,
    acks_late=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=SOFT_TIME_LIMIT,
    time_limit=SOFT_TIME_LIMIT + 120,
)
def run_import(self, *, job_id: str) -> None:  # type: ignore[no-untyped-def]
    """Idempotent: a finished job is left alone; an interrupted one resumes after its last
    committed chunk. Retries only on database connection errors, with backoff."""
    try:
        imports.import_run(job_id=uuid.UUID(job_id))
    except (OperationalError, InterfaceError) as error:
        raise self.retry(exc=error, countdown=min(2 ** (self.request.retries + 1), 60)) from None
