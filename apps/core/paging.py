"""Keyset pages for portal lists: newest first, a cursor of ``<timestamp>_<id>``."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from django.db.models import Model, Q, QuerySet
from django.http import Http404
from django.utils.dateparse import parse_datetime

__all__ = ["keyset_page"]

M = TypeVar("M", bound=Model)


def keyset_page(rows: QuerySet[M], before: str, *, field: str, size: int) -> tuple[list[M], str]:
    """One page of ``rows`` (ordered by ``field`` then id, newest first) after the cursor
    ``before``, and the cursor of the next page ("" on the last). A bad cursor is a 404."""
    at, _, pk = before.partition("_")
    moment = parse_datetime(at) if at else None
    if moment is not None:
        try:
            older: dict[str, Any] = {f"{field}__lt": moment}
            rows = rows.filter(Q(**older) | Q(**{field: moment}, id__lt=uuid.UUID(pk)))
        except ValueError:
            raise Http404("Bad cursor.") from None
    found = list(rows[: size + 1])
    if len(found) <= size:
        return found, ""
    last = found[size - 1]
    return found[:size], f"{getattr(last, field).isoformat()}_{last.pk}"
