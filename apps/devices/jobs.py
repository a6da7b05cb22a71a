"""Job helpers: create a job, report its progress (database + live push), log, finish, cancel.

Progress lives in the ``Job`` row (the source of truth, what the API serves); each update is
also pushed after commit to the browsers of the job's organization through the live websocket
(``org.<id>`` groups) as ``{"type": "job.progress", ...}``. A lost push only delays the bar:
the portal also polls the API.

Cancelling (``job_cancel``) sets the status at once; the runner of each kind asks
``job_cancelled`` before each chunk and, when it is, stops there and records the counts done so
far with a log line (``finished_at`` stays empty until it has). A cancelled job never runs again.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from functools import partial
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.base import File
from django.db import transaction
from django.db.models import Case, QuerySet, Value, When
from django.utils import timezone

from apps.core import audit, live
from apps.core.actors import Actor
from apps.core.models import Job, JobLine, JobStatus

from . import lifecycle

FINISHED = (JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED)
ACTIVE = (JobStatus.QUEUED, JobStatus.RUNNING)


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
    """Record the outcome (``result`` replaces the job's result) and push it. A job cancelled
    meanwhile stays ``cancelled`` (in the same UPDATE: a cancel may land after the last check)."""
    kept = Case(
        When(status=JobStatus.CANCELLED, then=Value(JobStatus.CANCELLED.value)),
        default=Value(status),
    )
    fields: dict[str, Any] = {"status": kept, "result": result, "finished_at": timezone.now()}
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


# --- cancelling ---------------------------------------------------------------------------------


IMPORT_PERMISSION = "device.add"


def start_permission(job: Job) -> str | None:
    """The permission starting this job needed on its organization (so cancelling it needs it
    too); None for a kind nobody may cancel."""
    from . import imports, services  # both import this module

    if job.kind == imports.KIND:
        return IMPORT_PERMISSION
    if job.kind == services.BULK_KIND:
        transition = lifecycle.TRANSITIONS.get(str(job.params.get("transition", "")))
        return transition.permission if transition else None
    return None


def cancel_permissions(kinds: Iterable[str] | None = None) -> frozenset[str]:
    """Every permission that may cancel a job of one of ``kinds`` (every kind when None): what
    an endpoint checks before it looks the job up."""
    from . import imports, services  # both import this module

    table = {
        imports.KIND: frozenset({IMPORT_PERMISSION}),
        services.BULK_KIND: frozenset(t.permission for t in lifecycle.TRANSITIONS.values()),
    }
    chosen = table.keys() if kinds is None else kinds
    return frozenset().union(*(table.get(kind, frozenset()) for kind in chosen))


def job_cancelled(job_id: uuid.UUID) -> bool:
    """What a runner asks before each chunk: one locking read of the status. The row lock waits
    for a cancel being committed, so a cancel that arrived while a chunk ran is always seen by
    the next check. Inside the chunk's transaction it adds no savepoint. A deleted job stops
    too."""
    with transaction.atomic(savepoint=False):
        status = (
            Job.objects.select_for_update()
            .filter(pk=job_id)
            .values_list("status", flat=True)
            .first()
        )
    return status in (JobStatus.CANCELLED, None)


def job_cancel(*, actor: Actor, job: Job) -> Job:
    """Cancel a queued or running job; ``actor`` needs the permission that starting that kind
    of job needs on its organization (``PermissionDenied`` otherwise).

    The status becomes ``cancelled`` at once. A queued job never runs (``finished_at`` is set
    now); a running one stops once the chunk in progress has committed: its runner records the
    counts done so far, a log line saying where it stopped, and ``finished_at``. A finished job
    is refused with a ``ValidationError`` on ``status``. Audited; pushed after commit."""
    with transaction.atomic():
        locked = (
            Job.objects.select_for_update(of=("self",))
            .select_related("organization")
            .get(pk=job.pk)
        )
        _check_cancel(actor, locked)
        previous, now = locked.status, timezone.now()
        finished_at = now if previous == JobStatus.QUEUED else None
        Job.objects.filter(pk=locked.pk).update(
            status=JobStatus.CANCELLED, finished_at=finished_at, updated_at=now
        )
        job_log(locked.pk, _cancel_line(actor, previous), level="warning")
        audit.record(
            actor=actor,
            action="job.cancel",
            obj=locked,
            changes={"status": [previous, JobStatus.CANCELLED.value]},
        )
        _push_after_commit(locked.pk)
    locked.refresh_from_db()
    return locked


def _check_cancel(actor: Actor, job: Job) -> None:
    permission = start_permission(job)
    if permission is None or not actor.has_perm(permission, job.organization.path):
        raise PermissionDenied("You may not cancel this job.")
    if job.status not in ACTIVE:
        ended = job.get_status_display()
        message = f"Only a queued or running job can be cancelled; this one has ended ({ended})."
        raise ValidationError({"status": message})


def _cancel_line(actor: Actor, previous: str) -> str:
    if previous == JobStatus.QUEUED:
        return f"Cancelled by {actor.label} before it started."
    return f"Cancelled by {actor.label}; stopping after the chunk in progress."


def job_lines(*, job: Job, after: int | None = None) -> QuerySet[JobLine]:
    """The log lines of a job the caller may already see, oldest first (after line ``after``)."""
    lines = JobLine.objects.filter(job=job)
    if after is not None:
        lines = lines.filter(pk__gt=after)
    return lines.order_by("id")
