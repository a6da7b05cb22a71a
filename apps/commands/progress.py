"""Per-request progress: counts by status, live pushes to browsers, and completion.

A request is complete when every one of its commands has a final status. Whoever made a
command final checks its requests afterwards (``check_completed``): under a lock on the request
row, so that two workers finishing its last two commands at the same time cannot both miss it
(the second one to take the lock sees the first one's committed command).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from functools import partial
from typing import Any

from django.db import transaction
from django.db.models import Count, Exists, OuterRef

from apps.changes.choices import ChangeStatus
from apps.changes.models import ChangeRequest
from apps.core import events, live
from apps.devices.lifecycle import emit_many

from .choices import FINAL, CommandStatus
from .models import Command

logger = logging.getLogger("apps.commands")

PERMISSION = "command.view"
COMPLETED_EVENT = "command.completed"
FAILED_EVENT = "command.failed"
REQUEST_COMPLETED_EVENT = "commands.request_completed"


def counts(request_id: uuid.UUID) -> dict[str, int]:
    """``{status: n}`` for every status (zeros included) plus ``total``."""
    found = dict(
        Command.objects.filter(request_id=request_id)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    result = {status: int(found.get(status, 0)) for status in CommandStatus.values}
    result["total"] = sum(result.values())
    return result


def push(request_id: uuid.UUID, organization_id: uuid.UUID) -> None:
    """Send the request's current counts to readers of its organization's commands."""
    data = {"type": "commands.progress", "request": str(request_id), "counts": counts(request_id)}
    live.broadcast(organization_id=organization_id, permission=PERMISSION, data=data)


def push_after_commit(request_id: uuid.UUID, organization_id: uuid.UUID) -> None:
    """One push per request and transaction, however many commands it changed."""
    pending = transaction.get_connection().run_on_commit
    if not any(
        getattr(entry[1], "args", None) == (request_id, organization_id) for entry in pending
    ):
        transaction.on_commit(partial(push, request_id, organization_id))


def emit_final(rows: Iterable[tuple[uuid.UUID, uuid.UUID, uuid.UUID, str, str]]) -> None:
    """``command.completed`` / ``command.failed`` per device for commands that just became
    final. ``rows``: (command id, organization id, device id, status, error); cancelled
    commands raise nothing (the request's cancellation is the event)."""
    completed: list[tuple[uuid.UUID | None, str, dict[str, Any]]] = []
    failed: list[tuple[uuid.UUID | None, str, dict[str, Any]]] = []
    for command_id, organization_id, device_id, status, error in rows:
        payload = {"command": str(command_id), "status": status, "error": error}
        if status == CommandStatus.SUCCEEDED:
            completed.append((organization_id, str(device_id), payload))
        elif status != CommandStatus.CANCELLED:
            failed.append((organization_id, str(device_id), payload))
    emit_many(COMPLETED_EVENT, completed)
    emit_many(FAILED_EVENT, failed)


def finished_but_executing(limit: int = 100) -> list[uuid.UUID]:
    """Executing command requests with no unfinished command left: the safety net for a
    completion check lost between a commit and its after-commit callback."""
    unfinished = Command.objects.filter(request_id=OuterRef("pk")).exclude(status__in=FINAL)
    rows = ChangeRequest.objects.filter(kind="command", status=ChangeStatus.EXECUTING)
    return list(rows.filter(~Exists(unfinished)).values_list("pk", flat=True)[:limit])


def check_completed(request_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """Complete every executing request of ``request_ids`` whose commands are all final;
    returns the ids completed. Runs in its own transaction (or the caller's)."""
    done = []
    with transaction.atomic():
        for request_id in sorted(set(request_ids)):
            if _complete(request_id):
                done.append(request_id)
    return done


def _complete(request_id: uuid.UUID) -> bool:
    request = (
        ChangeRequest.objects.select_for_update(of=("self",))
        .filter(pk=request_id, kind="command", status=ChangeStatus.EXECUTING)
        .first()
    )
    if request is None:
        return False
    if Command.objects.filter(request_id=request_id).exclude(status__in=FINAL).exists():
        return False
    tally = counts(request_id)
    _mark_completed(request)
    events.emit(
        REQUEST_COMPLETED_EVENT,
        organization_id=request.organization_id,
        payload={"request": str(request_id), "counts": tally},
        subject=request,
    )
    push_after_commit(request.pk, request.organization_id)
    return True


def _mark_completed(request: ChangeRequest) -> None:
    """Hand over to the change-request mechanism (status, audit, its own event)."""
    from apps.changes.execution import change_request_completed

    change_request_completed(request.pk)
