"""Reads of commands, always scoped to the actor."""

from __future__ import annotations

import uuid

from django.db.models import Count, QuerySet

from apps.changes.models import ChangeRequest
from apps.core.actors import Actor

from .choices import CommandStatus
from .models import Command


def command_list(*, actor: Actor) -> QuerySet[Command]:
    """The commands ``actor`` may see (a command belongs to its device's organization)."""
    return Command.objects.for_actor(actor, "view").select_related("device")


def command_progress(*, actor: Actor, request_id: uuid.UUID) -> dict[str, int] | None:
    """Counts by status (``total`` included) of the request's commands the actor may see;
    None when the actor may not see the request."""
    if not ChangeRequest.objects.for_actor(actor, "view").filter(pk=request_id).exists():
        return None
    found = dict(
        command_list(actor=actor)
        .filter(request_id=request_id)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    result = {status: int(found.get(status, 0)) for status in CommandStatus.values}
    result["total"] = sum(result.values())
    return result
