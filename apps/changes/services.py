"""Writes of change requests: create, edit, approve, reject, cancel.

Execution, scheduling, expiry and completion are in ``apps.changes.execution``. Every service
takes an explicit actor, runs in one transaction, audits in it and emits a domain event
(``changerequest.*``). A state that forbids the write raises ``Refused`` (the API answers 409);
bad input raises ``ValidationError``; a missing permission ``PermissionDenied``.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import APIKey, Organization
from apps.core import audit, events
from apps.core.actors import Actor

from . import kinds, policies, targets
from .choices import ChangeStatus, Decision, ResolveAt
from .content import content_hash, normalize_window
from .models import Approval, ChangeRequest, ChangeRequestDevice

__all__ = [
    "DEFAULT_EXPIRY",
    "Refused",
    "change_request_approve",
    "change_request_create",
    "change_request_reject",
    "change_request_update",
    "is_creator",
]

DEFAULT_EXPIRY = timedelta(days=7)
EDITABLE = (
    "title",
    "description",
    "spec",
    "target",
    "resolve_at",
    "run_at",
    "window",
    "expires_at",
)
CONTENT_FIELDS = ("spec", "target", "resolve_at", "run_at", "window", "expires_at")
AUDITED = ("status", "revision", "content_hash", "required_approvals", "title", *CONTENT_FIELDS)
EDITABLE_STATUSES = (ChangeStatus.PENDING_APPROVAL, ChangeStatus.APPROVED, ChangeStatus.REJECTED)


class Refused(Exception):
    """The request's state forbids this (executing an unapproved request, approving an
    outdated hash...). ``code`` is machine-readable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def require(actor: Actor, request: ChangeRequest, action: str) -> None:
    """PermissionDenied unless ``actor`` holds ``changerequest.<action>`` on its organization."""
    if not actor.has_perm(f"changerequest.{action}", request.organization.path):
        raise PermissionDenied(f"You may not {action} change requests here.")


def payload(request: ChangeRequest, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(request.pk),
        "kind": request.kind,
        "title": request.title,
        "status": request.status,
        "revision": request.revision,
        "content_hash": request.content_hash,
        **extra,
    }


def _creator(actor: Actor) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """(user, API key) who creates: for a key, the user who created the key, if known."""
    if actor.api_key_id is not None:
        key_user = APIKey.objects.filter(pk=actor.api_key_id).values_list("created_by", flat=True)
        return key_user.first(), actor.api_key_id
    return actor.user_id, None


def is_creator(actor: Actor, request: ChangeRequest) -> bool:
    """Whether ``actor`` is (or acts for) the person or key that created ``request``."""
    user_id, key_id = _creator(actor)
    if key_id is not None and key_id == request.created_by_api_key_id:
        return True
    return user_id is not None and user_id == request.created_by_id


def _validate(request: ChangeRequest, actor: Actor) -> None:
    """Normalize the spec (through the kind), the target, the window and the times."""
    try:
        kind = kinds.get(request.kind)
    except KeyError:
        message = f"Unknown kind. One of: {', '.join(kinds.names())}."
        raise ValidationError({"kind": [message]}) from None
    request.spec = kind.validate(organization=request.organization, spec=request.spec)
    request.target = targets.normalize(
        target=request.target, organization=request.organization, actor=actor
    )
    request.window = normalize_window(request.window)
    if request.resolve_at not in ResolveAt.values:
        raise ValidationError({"resolve_at": [f"One of: {', '.join(ResolveAt.values)}."]})
    now = timezone.now()
    if request.expires_at <= now:
        raise ValidationError({"expires_at": ["Must be in the future."]})
    if request.run_at is not None and request.run_at >= request.expires_at:
        raise ValidationError({"run_at": ["Must be before the request expires."]})


def _judge(request: ChangeRequest, actor: Actor) -> None:
    """Freeze the devices if asked, count them, apply the policy, compute the hash."""
    frozen = None
    if request.resolve_at == ResolveAt.APPROVAL:
        frozen = targets.freeze(request=request, actor=actor)
        request.device_count = len(frozen)
    else:
        ChangeRequestDevice.objects.filter(request=request).delete()
        request.device_count = targets.resolve(request=request, actor=actor).count()
    facts = kinds.get(request.kind).facts(request=request)
    request.required_approvals, request.policy_reason = policies.required_approvals(
        request, facts, request.device_count
    )
    request.policy_reason = request.policy_reason[:300]
    request.content_hash = content_hash(request, frozen)
    needs = request.required_approvals > 0
    request.status = ChangeStatus.PENDING_APPROVAL if needs else ChangeStatus.APPROVED


@transaction.atomic
def change_request_create(
    *,
    actor: Actor,
    organization: Organization,
    kind: str,
    title: str,
    spec: dict[str, Any],
    target: dict[str, Any],
    description: str = "",
    resolve_at: str = ResolveAt.EXECUTION,
    run_at: datetime | None = None,
    window: dict[str, Any] | None = None,
    expires_at: datetime | None = None,
) -> ChangeRequest:
    """Create a change request: validated by its kind, judged by the applicable policy,
    ``pending_approval`` when it needs approvals, else ``approved``. Nothing runs yet."""
    if not actor.has_perm("changerequest.add", organization.path):
        raise PermissionDenied("You may not create change requests here.")
    user_id, key_id = _creator(actor)
    request = ChangeRequest(
        organization=organization,
        kind=kind,
        title=title.strip(),
        description=description,
        spec=spec,
        target=target,
        resolve_at=resolve_at,
        run_at=run_at,
        window=window,
        expires_at=expires_at or timezone.now() + DEFAULT_EXPIRY,
        created_by_id=user_id,
        created_by_api_key_id=key_id,
        created_by_label=actor.label[:200],
    )
    if not request.title:
        raise ValidationError({"title": ["This field may not be blank."]})
    _validate(request, actor)
    request.save()
    _judge(request, actor)
    request.save()
    audit.record(
        actor=actor,
        action="changerequest.create",
        obj=request,
        changes=audit.diff({}, audit.snapshot(request, ("kind", *AUDITED))),
    )
    events.emit(
        "changerequest.created",
        organization_id=organization.pk,
        payload=payload(request, device_count=request.device_count),
        subject=request,
    )
    return request


def lock(request: ChangeRequest) -> ChangeRequest:
    return (
        ChangeRequest.objects.select_for_update(of=("self",))
        .select_related("organization")
        .get(pk=request.pk)
    )


@transaction.atomic
def change_request_update(*, actor: Actor, request: ChangeRequest, **fields: Any) -> ChangeRequest:
    """Edit a request that has not run: a new revision and hash when what will run changes,
    which voids every approval so far (they stay recorded, bound to their revision)."""
    unknown = set(fields) - set(EDITABLE)
    if unknown:
        raise ValidationError({name: ["This field cannot be changed."] for name in sorted(unknown)})
    require(actor, request, "change")
    request = lock(request)
    if request.status not in EDITABLE_STATUSES:
        raise Refused(
            "not_editable", f"A {request.get_status_display().lower()} request cannot be edited."
        )
    before = audit.snapshot(request, AUDITED)
    for name, value in fields.items():
        setattr(request, name, value.strip() if name == "title" else value)
    if not request.title:
        raise ValidationError({"title": ["This field may not be blank."]})
    _validate(request, actor)
    previous_hash = request.content_hash
    _judge(request, actor)
    if request.content_hash != previous_hash:
        request.revision += 1
    else:
        request.status = before["status"]  # nothing that runs changed: approvals still bind
    request.save()
    changes = audit.diff(before, audit.snapshot(request, AUDITED))
    if changes:
        audit.record(actor=actor, action="changerequest.update", obj=request, changes=changes)
        events.emit(
            "changerequest.updated",
            organization_id=request.organization_id,
            payload=payload(request, changes=sorted(changes)),
            subject=request,
        )
    return request


def valid_approvals(request: ChangeRequest) -> int:
    """Approvals of the current revision bound to the current hash."""
    return Approval.objects.filter(
        request=request,
        decision=Decision.APPROVE,
        revision=request.revision,
        content_hash=request.content_hash,
    ).count()


def _decide(
    actor: Actor, request: ChangeRequest, decision: str, seen_hash: str, comment: str
) -> tuple[ChangeRequest, Approval]:
    require(actor, request, "approve")
    request = lock(request)
    if is_creator(actor, request):
        raise Refused("own_request", "The creator of a request can never approve or reject it.")
    if request.status != ChangeStatus.PENDING_APPROVAL:
        state = request.get_status_display().lower()
        raise Refused("not_pending", f"This request is {state}, not pending approval.")
    if seen_hash != request.content_hash:
        raise Refused(
            "outdated", "The request changed since you saw it: review the current revision."
        )
    user_id, key_id = _creator(actor)
    approval = Approval(
        request=request,
        approver_id=user_id,
        approver_api_key_id=key_id,
        approver_label=actor.label[:200],
        decision=decision,
        revision=request.revision,
        content_hash=request.content_hash,
        comment=comment,
    )
    try:
        with transaction.atomic():
            approval.save()
    except IntegrityError:
        raise Refused("already_decided", "You already decided on this revision.") from None
    return request, approval


@transaction.atomic
def change_request_approve(
    *, actor: Actor, request: ChangeRequest, content_hash: str, comment: str = ""
) -> Approval:
    """Approve the revision whose hash the approver saw; never by its creator. With enough
    valid approvals the request becomes ``approved`` (it still has to be executed)."""
    request, approval = _decide(actor, request, Decision.APPROVE, content_hash, comment)
    approved = valid_approvals(request) >= request.required_approvals
    if approved:
        request.status = ChangeStatus.APPROVED
        request.save(update_fields=["status", "updated_at"])
    audit.record(
        actor=actor,
        action="changerequest.approve",
        obj=request,
        changes={"revision": request.revision, "content_hash": content_hash, "comment": comment},
    )
    if approved:
        events.emit(
            "changerequest.approved",
            organization_id=request.organization_id,
            payload=payload(request, approvers=_approvers(request)),
            subject=request,
        )
    return approval


def _approvers(request: ChangeRequest) -> list[str]:
    rows = Approval.objects.filter(
        request=request, revision=request.revision, decision=Decision.APPROVE
    )
    return list(rows.values_list("approver_label", flat=True))


@transaction.atomic
def change_request_reject(
    *, actor: Actor, request: ChangeRequest, content_hash: str, comment: str = ""
) -> Approval:
    """Reject the revision: one rejection is enough. An edit submits it again."""
    request, approval = _decide(actor, request, Decision.REJECT, content_hash, comment)
    request.status = ChangeStatus.REJECTED
    request.save(update_fields=["status", "updated_at"])
    audit.record(
        actor=actor,
        action="changerequest.reject",
        obj=request,
        changes={"revision": request.revision, "content_hash": content_hash, "comment": comment},
    )
    events.emit(
        "changerequest.rejected",
        organization_id=request.organization_id,
        payload=payload(request, by=actor.label, comment=comment),
        subject=request,
    )
    return approval
