"""Writes of commands: device reports (results), delivery marks, cancel, the HTTPS poll.

Device reports come in batches (the ingest worker's MQTT batch, or one HTTPS request). They
are applied set-based: the batch's commands are locked in one query, each report moves its
command forward or changes nothing (``choices.RANK``: a redelivered or late report is a
no-op), and the changed rows are written in one statement. A report after a final status
(a result arriving after a timeout or a cancel) is kept in ``late_result`` and changes nothing
else. Device reports are not audited row by row (like telemetry): the domain events
``command.completed`` / ``command.failed`` are their record.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import connection, transaction
from django.utils import timezone

from apps.devices.models_downlink import Downlink, DownlinkState

from . import progress
from .choices import FINAL, RANK, REPORTED, UNANSWERED, CommandStatus
from .models import Command

if TYPE_CHECKING:
    from apps.changes.models import ChangeRequest
    from apps.core.actors import Actor
    from apps.devices.models import Device

MAX_OUTPUT_KEYS = 200
POLL_LIMIT = 50


@dataclass(frozen=True)
class Report:
    """One device's report on one command (``{"status", "output", "error"}``)."""

    device_id: uuid.UUID
    command_id: str
    document: dict[str, Any]
    at: datetime


@dataclass(frozen=True)
class Refusal:
    index: int  # of the report in the batch
    reason: str  # "unknown_command" or "invalid_result"
    detail: str


def _problem(report: Report) -> Refusal | None:
    document = report.document
    status = document.get("status")
    if status not in REPORTED:
        allowed = ", ".join(REPORTED)
        return Refusal(-1, "invalid_result", f"status must be one of {allowed}, not {status!r}.")
    if not isinstance(document.get("output", {}), dict):
        return Refusal(-1, "invalid_result", "output must be a JSON object.")
    if not isinstance(document.get("error", ""), str):
        return Refusal(-1, "invalid_result", "error must be a string.")
    return None


def _command_id(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def results_record(*, reports: list[Report], actor: Actor) -> list[Refusal]:
    """Apply device reports in one transaction; returns the refused ones (a report on an
    unknown command or another device's is ``unknown_command``; a malformed one
    ``invalid_result``). Idempotent: the same batch again changes nothing."""
    refused: list[Refusal] = []
    wanted: list[tuple[int, Report, uuid.UUID]] = []
    for index, report in enumerate(reports):
        problem = _problem(report)
        command_id = _command_id(report.command_id)
        if problem is not None:
            refused.append(Refusal(index, problem.reason, problem.detail))
        elif command_id is None:
            refused.append(Refusal(index, "unknown_command", "Not a command id."))
        else:
            wanted.append((index, report, command_id))
    if not wanted:
        return refused
    with transaction.atomic():
        refused += _apply_all(wanted)
    return sorted(refused, key=lambda refusal: refusal.index)


def _apply_all(wanted: list[tuple[int, Report, uuid.UUID]]) -> list[Refusal]:
    rows = Command.objects.select_for_update(of=("self",)).filter(
        pk__in=sorted({command_id for _, _, command_id in wanted})
    )
    commands = {command.pk: command for command in rows.order_by("pk")}
    before = {pk: command.status for pk, command in commands.items()}
    refused, changed = [], {}
    for index, report, command_id in wanted:
        command = commands.get(command_id)
        if command is None or command.device_id != report.device_id:
            refused.append(Refusal(index, "unknown_command", f"No command {command_id} here."))
        elif _apply(command, report):
            changed[command.pk] = command
    if changed:
        _write(list(changed.values()))
        _after(
            [c for c in changed.values() if c.status in FINAL and before[c.pk] not in FINAL],
            changed.values(),
        )
    return refused


UPDATE_SQL = """
UPDATE commands_command AS c SET status = u.status, sent_at = u.sent_at,
    received_at = u.received_at, finished_at = u.finished_at, timeout_at = u.timeout_at,
    next_attempt_at = u.next_attempt_at, output = u.output, error = u.error,
    late_result = u.late_result, updated_at = u.updated_at
FROM unnest(%s::uuid[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::timestamptz[],
    %s::timestamptz[], %s::timestamptz[], %s::jsonb[], %s::text[], %s::jsonb[],
    %s::timestamptz[])
    AS u(id, status, sent_at, received_at, finished_at, timeout_at, next_attempt_at, output,
         error, late_result, updated_at)
WHERE c.id = u.id
"""


def _write(commands: list[Command]) -> None:
    """Write the changed columns of ``commands`` in one statement (``bulk_update``'s CASE
    expressions grow with the square of the batch)."""
    columns: list[list[Any]] = [[] for _ in range(11)]
    for c in commands:
        late = json.dumps(c.late_result) if c.late_result is not None else None
        values = (
            c.pk,
            c.status,
            c.sent_at,
            c.received_at,
            c.finished_at,
            c.timeout_at,
            c.next_attempt_at,
            json.dumps(c.output),
            c.error,
            late,
            c.updated_at,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    with connection.cursor() as cursor:
        cursor.execute(UPDATE_SQL, columns)


def _apply(command: Command, report: Report) -> bool:
    """Move ``command`` forward by ``report``; whether anything changed."""
    document, at = report.document, report.at
    status = str(document["status"])
    error = str(document.get("error") or "")
    if status == CommandStatus.FAILED and error == "expired":  # the agent dropped it unrun
        status = CommandStatus.EXPIRED
    if command.status in FINAL:
        if status not in FINAL or status == command.status or command.late_result is not None:
            return False
        command.late_result = {
            "status": status,
            "output": document.get("output") or {},
            "error": error,
            "at": at.isoformat(),
        }
        command.updated_at = timezone.now()
        return True
    if RANK[CommandStatus(status)] <= RANK[CommandStatus(command.status)]:
        return False
    command.status = status
    command.sent_at = command.sent_at or at
    command.next_attempt_at = None
    if command.received_at is None:
        command.received_at = at
        command.timeout_at = at + timedelta(seconds=command.timeout_seconds)
    if document.get("output"):
        command.output = dict(list(dict(document["output"]).items())[:MAX_OUTPUT_KEYS])
    if status in FINAL:
        command.finished_at, command.error = at, error
    command.updated_at = timezone.now()
    return True


def _after(finished: list[Command], changed: Any) -> None:
    progress.emit_final((c.pk, c.organization_id, c.device_id, c.status, c.error) for c in finished)
    for request_id, organization_id in {(c.request_id, c.organization_id) for c in changed}:
        progress.push_after_commit(request_id, organization_id)
    if finished:
        requests = sorted({c.request_id for c in finished})
        transaction.on_commit(lambda: progress.check_completed(requests))


def commands_mark_sent(command_ids: list[str]) -> None:
    """The broker has the messages of these commands (``downlinks.on_published``, in the
    publisher's transaction): ``queued`` -> ``sent``; later statuses stay."""
    ids = [found for found in map(_command_id, command_ids) if found is not None]
    now = timezone.now()
    Command.objects.filter(pk__in=ids, status=CommandStatus.QUEUED).update(
        status=CommandStatus.SENT, sent_at=now, updated_at=now
    )


def commands_cancel(*, request: ChangeRequest, actor: Actor) -> int:
    """Cancel the request's commands that are not final (in the caller's transaction, which
    audits the request's cancellation). Their unpublished messages are dropped and they are no
    longer retried; a device that already has one may still run it and report: the report is
    kept in ``late_result``. Returns how many were cancelled."""
    now = timezone.now()
    with transaction.atomic():
        pending = Command.objects.filter(request_id=request.pk).exclude(status__in=FINAL)
        ids = [str(pk) for pk in pending.values_list("pk", flat=True)]
        cancelled = pending.update(
            status=CommandStatus.CANCELLED,
            finished_at=now,
            next_attempt_at=None,
            error=f"Cancelled by {actor.label}.",
            updated_at=now,
        )
        Downlink.objects.filter(
            ref_type="command", ref_id__in=ids, state=DownlinkState.PENDING
        ).update(state=DownlinkState.SUPERSEDED)
        progress.push_after_commit(request.pk, request.organization_id)
    return cancelled


def commands_poll(*, device: Device) -> list[Command]:
    """The device's commands still to be delivered (``GET /device/v1/commands``), oldest
    first; handing them over counts as sending them. At least once: they come again on the
    next poll until the device reports ``received``."""
    now = timezone.now()
    with transaction.atomic():
        commands = list(
            Command.objects.filter(
                device=device, status__in=UNANSWERED, expires_at__gt=now
            ).order_by("issued_at", "id")[:POLL_LIMIT]
        )
        queued = [c.pk for c in commands if c.status == CommandStatus.QUEUED]
        if queued:
            Command.objects.filter(pk__in=queued, status=CommandStatus.QUEUED).update(
                status=CommandStatus.SENT, sent_at=now, updated_at=now
            )
    return commands
