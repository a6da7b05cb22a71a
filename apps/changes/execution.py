"""Running change requests: execute (now or scheduled), cancel, expire, complete.

``change_request_execute`` is refused unless the request is approved, not expired, its hash
still matches what was approved, and enough approvals bind to it. Due now (no ``run_at`` in
the future, inside its ``window``), it runs: the devices are resolved (the frozen list, or the
target now), decommissioned and replaced devices left out, and the kind creates the per-device
work in the same transaction. Otherwise it becomes ``scheduled`` and ``run_due`` (Celery beat)
runs it when due. The kind calls ``change_request_completed`` when every device is final.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.core import audit, events
from apps.core.actors import Actor, system_actor
from apps.devices.models import Device

from . import kinds, targets
from .choices import ChangeStatus, ResolveAt
from .content import content_hash, in_window
from .models import ChangeRequest
from .services import Refused, lock, payload, require, valid_approvals

__all__ = [
    "change_request_cancel",
    "change_request_completed",
    "change_request_execute",
    "expire_due",
    "run_due",
]

logger = logging.getLogger(__name__)
OPEN = (ChangeStatus.PENDING_APPROVAL, ChangeStatus.APPROVED, ChangeStatus.SCHEDULED)
CANCELLABLE = (*OPEN, ChangeStatus.REJECTED, ChangeStatus.EXECUTING)
DUE_BATCH = 100


def _check(request: ChangeRequest, now: datetime) -> list[uuid.UUID] | None:
    """Refused unless it may run; returns the frozen device ids (None when dynamic)."""
    if request.status != ChangeStatus.APPROVED:
        state = request.get_status_display().lower()
        raise Refused(
            "not_approved", f"Only an approved request can be executed; this one is {state}."
        )
    if request.expires_at <= now:
        raise Refused("expired", "This request has expired.")
    frozen = targets.frozen_ids(request) if request.resolve_at == ResolveAt.APPROVAL else None
    if content_hash(request, frozen) != request.content_hash:
        raise Refused("hash_mismatch", "What would run differs from what was submitted.")
    if valid_approvals(request) < request.required_approvals:
        raise Refused("not_approved", "This request lacks approvals of its current revision.")
    return frozen


def _due(request: ChangeRequest, now: datetime) -> bool:
    return (request.run_at is None or request.run_at <= now) and in_window(request.window, now)


def _devices(
    request: ChangeRequest, frozen: list[uuid.UUID] | None, actor: Actor | None
) -> list[uuid.UUID]:
    """The ids that receive it; Refused when a single device is out of service or none."""
    if frozen is not None:
        found = Device.objects.filter(pk__in=frozen)
    else:
        found = targets.resolve(request=request, actor=actor)
    device_ids = sorted(targets.receiving(found).values_list("pk", flat=True))
    single = targets.single_device_id(request)
    if single is not None and not device_ids:
        raise Refused("decommissioned", "The device is decommissioned or replaced: nothing sent.")
    if not device_ids:
        raise Refused("no_devices", "The target resolves to no device that may receive it.")
    return device_ids


def _run(
    request: ChangeRequest, actor: Actor, frozen: list[uuid.UUID] | None, scoped: bool
) -> None:
    """Resolve (in the actor's scope when ``scoped``) and hand the devices to the kind."""
    device_ids = _devices(request, frozen, actor if scoped else None)
    kinds.get(request.kind).execute(request=request, device_ids=device_ids, actor=actor)
    request.status = ChangeStatus.EXECUTING
    request.device_count = len(device_ids)
    request.executed_at = timezone.now()
    request.save(update_fields=["status", "device_count", "executed_at", "updated_at"])
    audit.record(
        actor=actor,
        action="changerequest.execute",
        obj=request,
        changes={"device_count": len(device_ids), "content_hash": request.content_hash},
    )
    events.emit(
        "changerequest.executed",
        organization_id=request.organization_id,
        payload=payload(request, device_count=len(device_ids)),
        subject=request,
    )


@transaction.atomic
def change_request_execute(
    *, actor: Actor, request: ChangeRequest, now: datetime | None = None
) -> ChangeRequest:
    """Execute an approved request now, or schedule it for its ``run_at`` / window."""
    require(actor, request, "execute")
    request = lock(request)
    now = now or timezone.now()
    frozen = _check(request, now)
    request.executed_by_id = actor.user_id
    if _due(request, now):
        _run(request, actor, frozen, scoped=True)
        return request
    request.status = ChangeStatus.SCHEDULED
    request.save(update_fields=["status", "executed_by", "updated_at"])
    audit.record(
        actor=actor,
        action="changerequest.schedule",
        obj=request,
        changes={"run_at": request.run_at, "window": request.window},
    )
    return request


def _close(request: ChangeRequest, actor: Actor, status: str, action: str, **extra: str) -> None:
    request.status = status
    fields = ["status", "updated_at"]
    if status == ChangeStatus.CANCELLED:
        request.cancelled_at = timezone.now()
        fields.append("cancelled_at")
    request.save(update_fields=fields)
    audit.record(actor=actor, action=f"changerequest.{action}", obj=request, changes=extra)
    events.emit(
        f"changerequest.{status}",
        organization_id=request.organization_id,
        payload=payload(request, **extra),
        subject=request,
    )


@transaction.atomic
def change_request_cancel(*, actor: Actor, request: ChangeRequest) -> ChangeRequest:
    """Cancel a request that has not finished; an executing one cancels, through its kind,
    whatever has not run yet on its devices."""
    require(actor, request, "change")
    request = lock(request)
    if request.status not in CANCELLABLE:
        state = request.get_status_display().lower()
        raise Refused("not_cancellable", f"A {state} request cannot be cancelled.")
    cancelled = 0
    if request.status == ChangeStatus.EXECUTING:
        cancelled = kinds.get(request.kind).cancel(request=request, actor=actor)
    _close(request, actor, ChangeStatus.CANCELLED, "cancel", devices_cancelled=str(cancelled))
    return request


def run_due(*, now: datetime | None = None) -> int:
    """Run the scheduled requests that are due (Celery beat); returns how many ran. Each in
    its own transaction, claimed with SKIP LOCKED so two beats never run one twice."""
    now = now or timezone.now()
    due = ChangeRequest.objects.filter(status=ChangeStatus.SCHEDULED).filter(
        Q(run_at__isnull=True) | Q(run_at__lte=now)
    )
    ran = 0
    for request_id in list(due.order_by("run_at").values_list("pk", flat=True)[:DUE_BATCH]):
        ran += _run_one(request_id, now)
    return ran


def _run_one(request_id: uuid.UUID, now: datetime) -> int:
    actor = system_actor("scheduled change requests")
    with transaction.atomic():
        request = (
            ChangeRequest.objects.select_for_update(of=("self",), skip_locked=True)
            .select_related("organization")
            .filter(pk=request_id, status=ChangeStatus.SCHEDULED)
            .first()
        )
        if request is None or not _due(request, now):
            return 0
        if request.expires_at <= now:
            _close(request, actor, ChangeStatus.EXPIRED, "expire")
            return 0
        try:
            with transaction.atomic():  # a refusal drops whatever was written for it
                request.status = ChangeStatus.APPROVED  # checked as when it was executed
                frozen = _check(request, now)
                # resolved within the organization: the executor's scope was checked then
                _run(request, actor, frozen, scoped=False)
        except Refused as refused:
            request.status = ChangeStatus.SCHEDULED
            _close(request, actor, ChangeStatus.CANCELLED, "fail", reason=refused.message)
            return 0
    return 1


def expire_due(*, now: datetime | None = None) -> int:
    """Mark expired the requests that never ran before their ``expires_at``."""
    now = now or timezone.now()
    actor = system_actor("change request expiry")
    expired = 0
    stale = ChangeRequest.objects.filter(status__in=OPEN, expires_at__lte=now)
    for request_id in list(stale.values_list("pk", flat=True)[:1000]):
        with transaction.atomic():
            request = (
                ChangeRequest.objects.select_for_update(of=("self",), skip_locked=True)
                .select_related("organization")
                .filter(pk=request_id, status__in=OPEN, expires_at__lte=now)
                .first()
            )
            if request is not None:
                _close(request, actor, ChangeStatus.EXPIRED, "expire")
                expired += 1
    return expired


@transaction.atomic
def change_request_completed(request_id: uuid.UUID) -> bool:
    """Called by a kind when every per-device item of the request is final: ``executing``
    becomes ``completed`` (once; later calls change nothing). Returns whether it did."""
    request = (
        ChangeRequest.objects.select_for_update(of=("self",))
        .select_related("organization")
        .filter(pk=request_id, status=ChangeStatus.EXECUTING)
        .first()
    )
    if request is None:
        return False
    progress = kinds.get(request.kind).progress(request=request)
    request.status = ChangeStatus.COMPLETED
    request.completed_at = timezone.now()
    request.save(update_fields=["status", "completed_at", "updated_at"])
    actor = system_actor("change requests")
    audit.record(actor=actor, action="changerequest.complete", obj=request, changes=progress)
    events.emit(
        "changerequest.completed",
        organization_id=request.organization_id,
        payload=payload(request, progress=progress),
        subject=request,
    )
    return True
