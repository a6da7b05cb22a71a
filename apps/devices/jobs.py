"""Job helpers: create a job, report its progress (database + live push), log, finish.

Progress lives in the ``Job`` row (the source of truth, what the API serves); each update is
also pushed after commit to the browsers of the job's organization through the live websocket
(``org.<id>`` groups) as ``{"type": "job.progress", ...}``. A lost push only delays the bar:
the portal also polls the API.
"""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from django.core.files.base import File
from django.db import transaction
from django.utils import timezone

from apps.core import live
from apps.core.actors import Actor
from apps.core.models import Job, JobLine, JobStatus

FINISHED = (JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED)


def job_create(
    *,
    actor: Actor,
    organization: Any,
    kind: str,
    params: dict[str, Any],
    total: int = 0,
    input_file: File[Any] | None = None,
) -> Job:
    """A queued job of ``kind`` in ``organization``, started by ``actor`` (the caller's
    transaction; the caller audits and schedules the work)."""
    job = Job(
        organization=organization,
        kind=kind,
        params={**params, "actor": actor_reference(actor)},
        total=total,
        created_by_id=actor.user_id,
        actor_label=actor.label[:255],
    )
    if input_file is not None:
        job.input_file.save(input_file.name or "input", input_file, save=False)
    job.save()
    return job


def actor_reference(actor: Actor) -> dict[str, Any]:
    """What a job keeps of who started it (the user is ``Job.created_by``)."""
    return {
        "kind": str(actor.kind),
        "user_id": str(actor.user_id) if actor.user_id else None,
        "api_key_id": str(actor.api_key_id) if actor.api_key_id else None,
        "label": actor.label,
        "source": actor.source,
    }


def job_actor(job: Job) -> Actor | None:
    """The actor who started the job, with the permissions they hold now (None if gone)."""
    from apps.accounts.actors import actor_for_api_key, actor_for_user
    from apps.accounts.models import APIKey, User
    from apps.core.actors import system_actor

    reference = job.params.get("actor", {})
    source = reference.get("source", "worker")
    if reference.get("user_id"):
        user = User.objects.filter(pk=reference["user_id"], is_active=True).first()
        return actor_for_user(user, source=source) if user else None
    if reference.get("api_key_id"):
        key = APIKey.objects.select_related("organization").filter(pk=reference["api_key_id"])
        found = key.first()
        return actor_for_api_key(found, source=source) if found and found.is_usable else None
    return system_actor(reference.get("label", "system"), source=source)


def progress_message(job: Job) -> dict[str, Any]:
    """What browsers receive (and what the API's progress fields say)."""
    return {
        "type": "job.progress",
        "id": str(job.pk),
        "kind": job.kind,
        "processed": job.processed,
        "total": job.total,
        "succeeded": job.succeeded,
        "failed": job.failed,
        "status": job.status,
        "percent": job.percent,
    }


def job_progress(
    job_id: uuid.UUID,
    *,
    processed: int,
    succeeded: int,
    failed: int,
    status: str | None = None,
) -> None:
    """One UPDATE of the counters (and status); the live push is sent after commit."""
    fields: dict[str, Any] = {"processed": processed, "succeeded": succeeded, "failed": failed}
    if status is not None:
        fields["status"] = status
    Job.objects.filter(pk=job_id).update(updated_at=timezone.now(), **fields)
    _push_after_commit(job_id)


def job_log(job_id: uuid.UUID, message: str, level: str = "info") -> None:
    JobLine.objects.create(job_id=job_id, message=message, level=level)


def job_finish(job_id: uuid.UUID, *, status: str, result: dict[str, Any]) -> None:
    """Record the outcome (``result`` replaces the job's result) and push it."""
    fields: dict[str, Any] = {"status": status, "result": result, "finished_at": timezone.now()}
    if status == JobStatus.FAILED:
        fields["error"] = str(result.get("error", ""))
    Job.objects.filter(pk=job_id).update(updated_at=timezone.now(), **fields)
    _push_after_commit(job_id)


def _push_after_commit(job_id: uuid.UUID) -> None:
    """One push per job and transaction, however many updates it made (it reads the row)."""
    pending = transaction.get_connection().run_on_commit
    if not any(getattr(entry[1], "args", None) == (job_id,) for entry in pending):
        transaction.on_commit(partial(push, job_id))


def push(job_id: uuid.UUID) -> None:
    """Send the job's current progress to its organization's browsers (readers with job.view)."""
    job = Job.objects.filter(pk=job_id).first()
    if job is not None:
        live.broadcast(
            organization_id=job.organization_id, permission="job.view", data=progress_message(job)
        )
