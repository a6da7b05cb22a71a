"""The audit log: one append-only row for every write, whoever made it and from wherever."""

from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import models

from .actors import Actor
from .context import get_request_id
from .models import AuditLog


def _plain(value: Any) -> Any:
    if isinstance(value, models.Model):
        return str(value.pk)
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item) for item in value]
    return value


def snapshot(obj: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """The plain values of ``fields`` (foreign keys as ids) for a before/after diff."""
    values: dict[str, Any] = {}
    for name in fields:
        field = obj._meta.get_field(name)
        attname = getattr(field, "attname", name)
        values[name] = _plain(getattr(obj, attname))
    return values


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """``{field: [before, after]}`` for every field whose value changed."""
    keys = list(dict.fromkeys([*before, *after]))
    return {
        key: [before.get(key), after.get(key)] for key in keys if before.get(key) != after.get(key)
    }


def record(
    *,
    actor: Actor,
    action: str,
    obj: models.Model | None = None,
    organization_id: uuid.UUID | None = None,
    changes: dict[str, Any] | None = None,
    object_type: str = "",
    object_id: str = "",
    object_repr: str = "",
) -> AuditLog:
    """Write one audit row in the caller's transaction and return it."""
    if obj is not None:
        object_type = object_type or obj._meta.label_lower
        object_id = object_id or str(obj.pk)
        object_repr = object_repr or str(obj)[:255]
        if organization_id is None:
            organization_id = getattr(obj, "organization_id", None)
    return AuditLog.objects.create(
        organization_id=organization_id,
        actor_kind=str(actor.kind),
        actor_user_id=actor.user_id,
        actor_api_key_id=actor.api_key_id,
        actor_device_id=actor.device_id,
        actor_label=actor.label[:255],
        source=actor.source,
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_repr=object_repr[:255],
        changes=_plain(changes or {}),
        request_id=get_request_id(),
    )
