"""Retries, expiry and timeouts of commands (Celery ``commands.sweep``, every few seconds).

- A command the device never said ``received`` for is sent again, under the same id, with
  exponential backoff (``RETRY_BASE_SECONDS`` doubling up to ``RETRY_CAP_SECONDS``) until its
  ``expires_at``; then it is ``expired``. The device executes an id once, so a retry costs one
  message, never a second execution.
- A command received but with no final result by ``timeout_at`` (received + its timeout) is
  ``timed_out``.

Each step is one set-based ``UPDATE ... RETURNING`` over the partial indexes of the model,
claiming rows with ``FOR UPDATE SKIP LOCKED`` so that concurrent sweepers never take the same
command twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from apps.devices.downlinks import enqueue

from . import progress
from .choices import CommandStatus
from .models import Command

RETRY_BASE_SECONDS = 30
RETRY_CAP_SECONDS = 1800
BATCH = 5000


def next_attempt(attempts: int, now: datetime, expires_at: datetime) -> datetime:
    """When to send again after ``attempts`` sends: never later than the expiry (the sweeper
    then expires it)."""
    delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return min(now + timedelta(seconds=delay), expires_at)


@dataclass(frozen=True)
class Swept:
    retried: int
    expired: int
    timed_out: int


FINISH_SQL = """
UPDATE commands_command SET status = %(to)s, finished_at = %(now)s, updated_at = %(now)s,
    next_attempt_at = NULL, error = %(error)s
WHERE id IN (
    SELECT id FROM commands_command WHERE status = ANY(%(from)s) AND {column} <= %(now)s
    {extra} ORDER BY {column} LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
RETURNING id, organization_id, device_id, request_id, status, error
"""

RETRY_SQL = """
UPDATE commands_command SET attempts = attempts + 1, updated_at = %(now)s,
    next_attempt_at = LEAST(
        %(now)s + make_interval(secs => LEAST(%(cap)s, %(base)s * power(2, attempts))),
        expires_at)
WHERE id IN (
    SELECT id FROM commands_command WHERE status = ANY(%(from)s) AND next_attempt_at <= %(now)s
    AND expires_at > %(now)s ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
RETURNING id
"""


def sweep(*, now: datetime | None = None, limit: int = BATCH) -> Swept:
    """One pass: expire, time out, then resend what is due. Returns the counts."""
    now = now or timezone.now()
    unanswered: list[str] = [CommandStatus.QUEUED, CommandStatus.SENT]
    running: list[str] = [CommandStatus.RECEIVED, CommandStatus.IN_PROGRESS]
    with transaction.atomic():
        expired = _finish(CommandStatus.EXPIRED, unanswered, "expires_at", now, limit)
        timed_out = _finish(CommandStatus.TIMED_OUT, running, "timeout_at", now, limit)
        finished = expired + timed_out
        progress.emit_final((row[0], row[1], row[2], row[4], row[5]) for row in finished)
        requests = {(row[3], row[1]) for row in finished}
        retried = _retry(unanswered, now, limit)
        for request_id, organization_id in requests:
            progress.push_after_commit(request_id, organization_id)
    stragglers = progress.finished_but_executing()
    if requests or stragglers:
        progress.check_completed([*(request_id for request_id, _ in requests), *stragglers])
    return Swept(retried=retried, expired=len(expired), timed_out=len(timed_out))


def _finish(
    to: str, statuses: list[str], column: str, now: datetime, limit: int
) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID, str, str]]:
    error = (
        "Never received before it expired."
        if to == CommandStatus.EXPIRED
        else ("No final result before the timeout.")
    )
    sql = FINISH_SQL.format(column=column, extra="")
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            {"to": to, "now": now, "error": error, "from": statuses, "limit": limit},
        )
        return list(cursor.fetchall())


def _retry(statuses: list[str], now: datetime, limit: int) -> int:
    from .kind import outgoing

    with connection.cursor() as cursor:
        cursor.execute(
            RETRY_SQL,
            {
                "now": now,
                "cap": RETRY_CAP_SECONDS,
                "base": RETRY_BASE_SECONDS,
                "from": statuses,
                "limit": limit,
            },
        )
        ids = [row[0] for row in cursor.fetchall()]
    if ids:
        enqueue(
            [
                outgoing(command, retry=True)
                for command in Command.objects.filter(pk__in=ids).order_by("id")
            ]
        )
    return len(ids)
