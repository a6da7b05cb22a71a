"""Reads shared by the API and the portal (always actor-scoped)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from .actors import Actor
from .models import AuditLog

AUDIT_CSV_COLUMNS = (
    "created_at",
    "organization_id",
    "actor_kind",
    "actor_label",
    "source",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "changes",
    "request_id",
)


def audit_log_list(
    *,
    actor: Actor,
    organization_id: Any = None,
    action: str = "",
    actor_label: str = "",
    object_type: str = "",
    object_id: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[AuditLog]:
    """Audit rows the actor may view, newest first, narrowed by the given filters."""
    rows = AuditLog.objects.for_actor(actor, "view")
    if organization_id:
        rows = rows.filter(organization_id=organization_id)
    if action:
        rows = rows.filter(action__startswith=action)
    if actor_label:
        rows = rows.filter(actor_label__icontains=actor_label)
    if object_type:
        rows = rows.filter(object_type=object_type)
    if object_id:
        rows = rows.filter(object_id=object_id)
    if since:
        rows = rows.filter(created_at__gte=since)
    if until:
        rows = rows.filter(created_at__lt=until)
    return rows.order_by("-created_at", "-id")


def _cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas (CSV injection) in text cells."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def audit_log_csv(rows: QuerySet[AuditLog]) -> Iterator[str]:
    """Stream CSV lines (header first) without loading the whole result in memory."""
    import json

    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        value = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate(0)
        return value

    writer.writerow(AUDIT_CSV_COLUMNS)
    yield flush()
    for row in rows.values_list(*AUDIT_CSV_COLUMNS).iterator(chunk_size=2000):
        values = list(row)
        values[0] = values[0].isoformat()
        values[9] = json.dumps(values[9], sort_keys=True)
        writer.writerow([_cell(value) for value in values])
        yield flush()
