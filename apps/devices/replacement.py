"""Replacement of a failed device by a successor that takes over its logical identity."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.core import audit, events
from apps.core.actors import Actor

from . import credentials, lifecycle
from .choices import DeviceState
from .models import Device, GroupMembership
from .services import device_payload

REPLACEABLE = frozenset(lifecycle.LIVE)
SUCCESSOR_STATES = frozenset({DeviceState.ESCROW, DeviceState.ACTIVE})
IN_SERVICE = frozenset({DeviceState.ACTIVE, DeviceState.MAINTENANCE, DeviceState.SUSPENDED})
INHERITED = ("name", "tags", "attributes", "latitude", "longitude", "site")


def _check_replacement(old: Device, new: Device) -> None:
    if old.state not in REPLACEABLE:
        raise ValidationError({"state": f"Cannot replace a device that is {old.state}."})
    errors: dict[str, str] = {}
    if new.pk == old.pk:
        errors["successor"] = "A device cannot replace itself."
    elif new.state not in SUCCESSOR_STATES:
        errors["successor"] = f"The successor must be in escrow or active; it is {new.state}."
    elif new.manufacturer_id != old.manufacturer_id:
        errors["successor"] = "The successor must come from the same manufacturer."
    elif new.organization_id != old.organization_id:
        errors["successor"] = "The successor must belong to the same organization."
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def device_replace(*, actor: Actor, old: Device, new: Device) -> Device:
    """``new`` takes over ``old``'s identity: name, tags, attributes, location, site and static
    group memberships move to it, it takes ``old``'s service state, and ``old`` becomes
    ``replaced`` (credentials revoked) with a link to it. Configuration and entitlements belong
    to later capabilities: they follow through the ``device.replaced`` event, which carries both
    ids. Both histories stay reachable from either device (``selectors.device_timeline``)."""
    first, second = sorted([old.pk, new.pk])
    locked = {
        device.pk: device
        for device in Device.objects.select_for_update(of=("self",)).filter(pk__in=[first, second])
    }
    old, new = locked[old.pk], locked[new.pk]
    _check_replacement(old, new)
    before = audit.snapshot(new, (*INHERITED, "state"))
    for name in INHERITED:
        setattr(new, name, getattr(old, name))
    if old.state in IN_SERVICE:
        new.state, new.state_changed_at = old.state, timezone.now()
    new.save()
    moved = _move_memberships(old, new)
    credentials.revoke_on_transition(device_ids=[old.pk], actor=actor, transition="replace")
    previous = old.state
    old.state, old.state_changed_at = DeviceState.REPLACED, timezone.now()
    old.replaced_by, old.claim_code_hash = new, ""
    old.save(
        update_fields=["state", "state_changed_at", "replaced_by", "claim_code_hash", "updated_at"]
    )
    link = {"predecessor": str(old.pk), "successor": str(new.pk)}
    audit.record(
        actor=actor,
        action="device.replace",
        obj=old,
        changes={"state": [previous, DeviceState.REPLACED], **link},
    )
    audit.record(
        actor=actor,
        action="device.replace",
        obj=new,
        changes={
            **audit.diff(before, audit.snapshot(new, (*INHERITED, "state"))),
            "groups": moved,
            **link,
        },
    )
    events.emit(
        "device.replaced",
        organization_id=old.organization_id,
        payload={"old": str(old.pk), "new": str(new.pk), "organization": str(old.organization_id)},
        subject=old,
    )
    events.emit(
        "device.credentials_revoked",
        organization_id=old.organization_id,
        payload=device_payload(old, transition="replace", reason=""),
        subject=old,
    )
    return new


def _move_memberships(old: Device, new: Device) -> int:
    """Static group memberships move to the successor (set-based); returns how many."""
    group_ids = list(GroupMembership.objects.filter(device=old).values_list("group_id", flat=True))
    GroupMembership.objects.bulk_create(
        [GroupMembership(group_id=group_id, device=new) for group_id in group_ids],
        ignore_conflicts=True,
    )
    GroupMembership.objects.filter(device=old).delete()
    return len(group_ids)
