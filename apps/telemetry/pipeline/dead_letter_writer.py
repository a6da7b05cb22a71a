"""Writing a batch's dead letters: one ``INSERT ... ON CONFLICT DO NOTHING`` statement.

A dead letter's ``digest`` (``DeadLetter.message_digest``: its topic and raw bytes) is unique,
so a refused message the broker delivers again (the worker died after the commit, before its
acknowledgement) finds its dead letter already there and adds none. The statement returns the
digests it stored, which tells the caller new dead letters from repeats. The rows travel as one
array per column (``unnest``): the same eleven parameters whatever the batch's size.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection

from apps.core.ids import uuid7

from ..choices import DeadLetterStatus
from ..models import DeadLetter
from ..models.storage import TOPIC_LENGTH

__all__ = ["Row", "insert"]

DETAIL_LENGTH = 4000

INSERT_SQL = f"""
INSERT INTO {DeadLetter._meta.db_table} (id, received_at, organization_id, device_id, source,
    topic, reason, detail, payload, digest, status, replay_count)
SELECT id, received_at, organization_id, device_id, source, topic, reason, detail, payload,
    digest, %(status)s, 0
FROM unnest(%(id)s::uuid[], %(received_at)s::timestamptz[], %(organization_id)s::uuid[],
    %(device_id)s::uuid[], %(source)s::text[], %(topic)s::text[], %(reason)s::text[],
    %(detail)s::text[], %(payload)s::bytea[], %(digest)s::bytea[])
    AS incoming (id, received_at, organization_id, device_id, source, topic, reason, detail,
    payload, digest)
ON CONFLICT (digest) DO NOTHING
RETURNING digest
"""  # noqa: S608 (the table name is the model's; every value is a parameter)


@dataclass(frozen=True, slots=True)
class Row:
    """One dead letter to write (``topic`` and ``detail`` are cut to their columns' size)."""

    received_at: datetime
    organization_id: uuid.UUID | None
    device_id: uuid.UUID | None
    source: str
    topic: str
    reason: str
    detail: str
    payload: bytes

    @property
    def digest(self) -> bytes:
        return DeadLetter.message_digest(self.topic, self.payload)


def insert(rows: Sequence[Row]) -> list[bool]:
    """Write ``rows`` in one statement; for each row, whether it made a new dead letter (False:
    the same message is already a dead letter, from an earlier batch or earlier in this one)."""
    if not rows:
        return []
    digests = [row.digest for row in rows]
    columns: dict[str, Any] = {
        "status": DeadLetterStatus.NEW.value,
        "id": [uuid7() for _ in rows],
        "received_at": [row.received_at for row in rows],
        "organization_id": [row.organization_id for row in rows],
        "device_id": [row.device_id for row in rows],
        "source": [row.source for row in rows],
        "topic": [row.topic[:TOPIC_LENGTH] for row in rows],
        "reason": [row.reason for row in rows],
        "detail": [row.detail[:DETAIL_LENGTH] for row in rows],
        "payload": [row.payload for row in rows],
        "digest": digests,
    }
    with connection.cursor() as cursor:
        cursor.execute(INSERT_SQL, columns)
        stored = {bytes(digest) for (digest,) in cursor.fetchall()}
    new: list[bool] = []
    for digest in digests:
        new.append(digest in stored)
        stored.discard(digest)  # a repeat later in the batch is not new
    return new
