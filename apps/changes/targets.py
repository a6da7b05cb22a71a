"""Which devices a change request is for.

A target is one of ``{"device": id}``, ``{"group": id}`` (static or dynamic) or
``{"filter": selection}`` (``apps.devices.selection``). It always resolves inside the request's
organization subtree and, when an actor resolves it, inside the devices that actor may see.
Decommissioned and replaced devices never receive anything: ``receiving`` leaves them out.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from apps.accounts.models import Organization
from apps.core.actors import Actor
from apps.core.scoping import organization_ids_under
from apps.devices.choices import DeviceState
from apps.devices.groups import group_list
from apps.devices.models import Device, DeviceGroup
from apps.devices.selection import selection_q

from .models import ChangeRequest, ChangeRequestDevice

__all__ = ["freeze", "normalize", "receiving", "resolve", "single_device_id"]

FORMS = ("device", "group", "filter")
NEVER_RECEIVE = (DeviceState.DECOMMISSIONED, DeviceState.REPLACED)


def _error(message: str) -> ValidationError:
    return ValidationError({"target": [message]})


def _id(value: Any, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise _error(f"Unknown {name}.") from None


def normalize(*, target: Any, organization: Organization, actor: Actor) -> dict[str, Any]:
    """The canonical target; ValidationError on a malformed, unknown or out-of-scope one (a
    device or group the actor cannot see, or outside the organization, is "unknown")."""
    if not isinstance(target, dict) or len(target) != 1 or next(iter(target)) not in FORMS:
        raise _error('One of {"device": id}, {"group": id} or {"filter": {...}}.')
    form, value = next(iter(target.items()))
    if form == "device":
        device_id = _id(value, "device")
        if not _in_scope(organization, actor).filter(pk=device_id).exists():
            raise _error("Unknown device.")
        return {"device": str(device_id)}
    if form == "group":
        group_id = _id(value, "group")
        if not group_list(actor=actor).filter(pk=group_id).exists():
            raise _error("Unknown group.")
        return {"group": str(group_id)}
    try:
        selection_q(value, groups=_groups(actor))
    except ValidationError as error:
        raise _error(f"Invalid filter: {_messages(error)}") from None
    return {"filter": value}


def _messages(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(f"{key}: {' '.join(msgs)}" for key, msgs in error.message_dict.items())
    return " ".join(error.messages)


def _groups(actor: Actor | None) -> QuerySet[DeviceGroup] | None:
    return group_list(actor=actor) if actor is not None else None


def _in_scope(organization: Organization, actor: Actor | None) -> QuerySet[Device]:
    devices = Device.objects.filter(organization__in=organization_ids_under([organization.path]))
    if actor is not None and not actor.is_platform_staff:
        devices = devices.filter(pk__in=Device.objects.for_actor(actor, "view").values("pk"))
    return devices


def resolve(*, request: ChangeRequest, actor: Actor | None) -> QuerySet[Device]:
    """The devices the target names now (all states). ``actor=None``: the platform resolving
    a request someone already executed (scheduled), bounded by the organization only."""
    devices = _in_scope(request.organization, actor)
    target = request.target
    if "device" in target:
        return devices.filter(pk=target["device"])
    if "group" in target:
        return devices.filter(selection_q({"group": [target["group"]]}, groups=_groups(actor)))
    return devices.filter(selection_q(target["filter"], groups=_groups(actor)))


def receiving(devices: QuerySet[Device]) -> QuerySet[Device]:
    """Those of ``devices`` that may receive a change."""
    return devices.exclude(state__in=NEVER_RECEIVE)


def single_device_id(request: ChangeRequest) -> uuid.UUID | None:
    value = request.target.get("device") if isinstance(request.target, dict) else None
    return uuid.UUID(value) if value else None


def freeze(*, request: ChangeRequest, actor: Actor) -> list[uuid.UUID]:
    """Store the devices the target resolves to now (``resolve_at=approval``); returns their
    sorted ids. Replaces a former frozen list (an edit)."""
    ChangeRequestDevice.objects.filter(request=request).delete()
    device_ids = sorted(resolve(request=request, actor=actor).values_list("pk", flat=True))
    ChangeRequestDevice.objects.bulk_create(
        [ChangeRequestDevice(request=request, device_id=pk) for pk in device_ids],
        batch_size=5000,
    )
    return device_ids


def frozen_ids(request: ChangeRequest) -> list[uuid.UUID]:
    return sorted(
        ChangeRequestDevice.objects.filter(request=request).values_list("device_id", flat=True)
    )
