"""Keyset (cursor) pages of the portal's fleet list: never OFFSET, never COUNT(*).

A sort is a list of (expression name, descending) pairs that ends with the primary key, so every
row has a unique position. A cursor is the sort key of a page's last (``next``) or first
(``prev``) row, signed so that a visitor cannot forge an arbitrary SQL comparison.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import Any

from django.core import signing
from django.db.models import DateTimeField, F, Q, QuerySet, Value
from django.db.models.functions import Coalesce

SALT = "fleet.keyset"
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)

# label -> ((field, descending), ...); the last key is always the primary key.
SORTS: dict[str, tuple[tuple[str, bool], ...]] = {
    "newest": (("id", True),),
    "serial": (("serial", False), ("id", False)),
    "last_seen": (("seen_key", True), ("id", True)),
}
SORT_LABELS = {"newest": "Newest", "serial": "Serial number", "last_seen": "Last seen"}


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    next_cursor: str | None
    prev_cursor: str | None


def _annotate(queryset: QuerySet[Any], sort: str) -> QuerySet[Any]:
    if sort == "last_seen":
        # Never-seen devices sort last without a NULL special case in the keyset comparison.
        return queryset.annotate(
            seen_key=Coalesce("last_seen_at", Value(EPOCH, output_field=DateTimeField()))
        )
    return queryset


def _after(keys: tuple[tuple[str, bool], ...], values: list[Any], *, forward: bool) -> Q:
    """Rows strictly after ``values`` in the sort order (before it when not ``forward``)."""
    alternatives = []
    for index, (field, descending) in enumerate(keys):
        equal = {name: value for (name, _), value in zip(keys[:index], values, strict=False)}
        lookup = "lt" if descending == forward else "gt"
        alternatives.append(Q(**equal, **{f"{field}__{lookup}": values[index]}))
    return reduce(or_, alternatives)


def _order(keys: tuple[tuple[str, bool], ...], *, forward: bool) -> list[Any]:
    return [
        F(field).desc() if descending == forward else F(field).asc() for field, descending in keys
    ]


def _encode(row: Any, keys: tuple[tuple[str, bool], ...], direction: str) -> str:
    values = []
    for field, _ in keys:
        value = getattr(row, field)
        values.append(value.isoformat() if isinstance(value, datetime.datetime) else str(value))
    return signing.dumps({"d": direction, "v": values}, salt=SALT, compress=True)


def _decode(cursor: str, keys: tuple[tuple[str, bool], ...]) -> tuple[bool, list[Any]] | None:
    try:
        data = signing.loads(cursor, salt=SALT)
        raw = data["v"]
        if len(raw) != len(keys) or data["d"] not in ("n", "p"):
            return None
        values: list[Any] = []
        for (field, _), value in zip(keys, raw, strict=True):
            if field == "id":
                values.append(uuid.UUID(value))
            elif field == "seen_key":
                values.append(datetime.datetime.fromisoformat(value))
            else:
                values.append(value)
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None
    return data["d"] == "n", values


def keyset_page(queryset: QuerySet[Any], *, sort: str, cursor: str, size: int) -> Page:
    """One page of ``queryset`` in ``sort`` order, after (or before) ``cursor``."""
    keys = SORTS[sort]
    queryset = _annotate(queryset, sort)
    decoded = _decode(cursor, keys) if cursor else None
    forward = True if decoded is None else decoded[0]
    if decoded is not None:
        queryset = queryset.filter(_after(keys, decoded[1], forward=forward))
    rows = list(queryset.order_by(*_order(keys, forward=forward))[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if not forward:
        rows.reverse()
    has_next = more if forward else decoded is not None
    has_prev = decoded is not None if forward else more
    return Page(
        rows=rows,
        next_cursor=_encode(rows[-1], keys, "n") if rows and has_next else None,
        prev_cursor=_encode(rows[0], keys, "p") if rows and has_prev else None,
    )
