"""Access checks of the registry's front doors: 404 outside the view scope, 403 for a visible
object the actor may not act on (``PermissionDenied``)."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404

from apps.core.actors import Actor

from .models import Device, Transfer
from .selectors import transfer_list


def _uuid(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise Http404 from None


def access_device(*, actor: Actor, device_id: Any, action: str = "view") -> Device:
    """The device, if the actor may view it (else 404) and ``action`` it (else 403)."""
    device = Device.objects.for_actor(actor, "view").filter(pk=_uuid(device_id)).first()
    if device is None:
        raise Http404
    if action != "view" and not (
        Device.objects.for_actor(actor, action).filter(pk=device.pk).exists()
    ):
        raise PermissionDenied
    return device


def access_transfer(*, actor: Actor, transfer_id: Any, side: str) -> Transfer:
    """A transfer the actor sees (sent or received), if they hold ``device.transfer`` on
    ``side`` (``"to"`` to accept or reject, ``"from"`` to cancel)."""
    transfer = (
        transfer_list(actor=actor)
        .select_related("from_organization", "to_organization", "device")
        .filter(pk=_uuid(transfer_id))
        .first()
    )
    if transfer is None:
        raise Http404
    organization = transfer.to_organization if side == "to" else transfer.from_organization
    if not actor.has_perm("device.transfer", organization.path):
        raise PermissionDenied
    return transfer
