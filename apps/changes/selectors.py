"""Reads of change requests, always in the actor's scope."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from apps.accounts.models import APIKey
from apps.core.actors import Actor
from apps.core.models import AuditLog
from apps.devices.models import Device

from . import kinds, targets
from .choices import ChangeStatus, ResolveAt
from .kinds import DevicePreview
from .models import Approval, ChangeRequest, ChangeRequestDevice

__all__ = [
    "Preview",
    "approval_inbox",
    "change_request_list",
    "change_request_preview",
    "change_request_timeline",
]

PREVIEW_PAGE = 50


def change_request_list(
    *, actor: Actor, action: str = "view", status: str = "", kind: str = ""
) -> QuerySet[ChangeRequest]:
    """Requests the actor may ``action``, newest first, optionally by status and kind."""
    rows = ChangeRequest.objects.for_actor(actor, action).select_related("organization")
    if status:
        rows = rows.filter(status=status)
    if kind:
        rows = rows.filter(kind=kind)
    return rows.order_by("-created_at", "-id")


def _own(actor: Actor) -> Q:
    """The requests ``actor`` created (directly, or through a key of theirs / its creator)."""
    if actor.api_key_id is not None:
        key_user = APIKey.objects.filter(pk=actor.api_key_id).values_list("created_by", flat=True)
        user_id = key_user.first()
        own = Q(created_by_api_key_id=actor.api_key_id)
        return own | Q(created_by_id=user_id) if user_id is not None else own
    return Q(created_by_id=actor.user_id) if actor.user_id is not None else Q(pk__in=[])


def approval_inbox(*, actor: Actor) -> QuerySet[ChangeRequest]:
    """Pending requests the actor may approve, not their own, not yet decided by them in
    their current revision; oldest first (the longest waiting on top)."""
    mine = Approval.objects.filter(request=OuterRef("pk"), revision=OuterRef("revision"))
    if actor.api_key_id is not None:
        mine = mine.filter(approver_api_key_id=actor.api_key_id)
    else:
        mine = mine.filter(approver_id=actor.user_id)
    rows = change_request_list(actor=actor, action="approve", status=ChangeStatus.PENDING_APPROVAL)
    return rows.exclude(_own(actor)).exclude(Exists(mine)).order_by("created_at", "id")


@dataclass
class Preview:
    """One page of a dry run: the devices the request resolves to now (or its frozen list),
    what would change on each, and how many are left out (decommissioned, replaced)."""

    total: int
    excluded: int
    devices: list[DevicePreview] = field(default_factory=list)
    next_after: uuid.UUID | None = None


def _resolved(request: ChangeRequest, actor: Actor) -> QuerySet[Device]:
    if request.resolve_at == ResolveAt.APPROVAL:
        listed = ChangeRequestDevice.objects.filter(request=request).values("device_id")
        frozen = Device.objects.filter(pk__in=listed)
        return frozen.filter(pk__in=Device.objects.for_actor(actor, "view").values("pk"))
    return targets.resolve(request=request, actor=actor)


def change_request_preview(
    *, actor: Actor, request: ChangeRequest, after: uuid.UUID | None = None, limit: int = 50
) -> Preview:
    """The dry run, one keyset page of devices (by id) at a time. Reads only."""
    devices = _resolved(request, actor)
    receiving = targets.receiving(devices)
    total = receiving.count()
    page = receiving.order_by("id")
    if after is not None:
        page = page.filter(pk__gt=after)
    rows = list(page.values_list("pk", flat=True)[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    previews = kinds.get(request.kind).preview(request=request, device_ids=rows) if rows else []
    return Preview(
        total=total,
        excluded=devices.count() - total,
        devices=previews,
        next_after=rows[-1] if more else None,
    )


def change_request_timeline(*, request: ChangeRequest) -> list[dict[str, Any]]:
    """What happened to the request, oldest first, from its audit records."""
    rows = AuditLog.objects.filter(
        object_type="changes.changerequest", object_id=str(request.pk)
    ).order_by("created_at", "id")
    return [
        {
            "at": row.created_at,
            "action": row.action.removeprefix("changerequest."),
            "who": row.actor_label,
            "changes": row.changes,
        }
        for row in rows
    ]


def approvals_of(request: ChangeRequest) -> QuerySet[Approval]:
    return Approval.objects.filter(request=request).order_by("created_at", "id")
