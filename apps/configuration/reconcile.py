"""Keep desired configuration current when something other than a layer changes it.

A device joining or leaving a group, a dynamic group's filter changing, a group deleted, or a
device's own attributes, tags or name changing (variables, dynamic groups) can change effective
configurations without any configuration change request. The consumer below reacts to those
domain events by recomputing the devices concerned (``services.recompute``: only a device
whose effective configuration really changed gets a new version and a ``config/desired``
message), so the history says which version came from a membership change (no change request,
created by ``configuration``).
"""

from __future__ import annotations

import uuid

from apps.accounts.models import Organization
from apps.core.actors import system_actor
from apps.core.events import consumer
from apps.core.models import Event
from apps.core.scoping import organization_ids_under
from apps.devices.models import Device

from . import layering, services
from .models import DeviceConfigurationState

GROUP_EVENTS = ("group.devices_added", "group.devices_removed", "group.updated", "group.deleted")
DEVICE_EVENTS = ("device.updated",)


def devices_to_reconcile(event: Event) -> list[uuid.UUID]:
    """The devices whose effective configuration ``event`` may have changed."""
    if event.type in DEVICE_EVENTS:  # only a device already managed: others compute lazily
        managed = DeviceConfigurationState.objects.filter(device_id=event.subject_id or None)
        return list(managed.values_list("device_id", flat=True))
    path = Organization.objects.filter(pk=event.organization_id).values_list("path", flat=True)
    if not path:
        return []
    within = organization_ids_under([path[0]])
    # a device that left the group is among the managed ones; a new member may not be yet
    managed = set(
        DeviceConfigurationState.objects.filter(organization__in=within).values_list(
            "device_id", flat=True
        )
    )
    if event.type != "group.deleted" and event.subject_id:
        members = layering.affected_devices(layer="group", layer_id=uuid.UUID(event.subject_id))
        managed |= set(members.values_list("pk", flat=True))
    return sorted(managed)


@consumer("configuration.reconcile", events=[*GROUP_EVENTS, *DEVICE_EVENTS])
def reconcile(event: Event) -> None:
    """Recompute the devices concerned (idempotent: a redelivery changes nothing more)."""
    device_ids = devices_to_reconcile(event)
    eligible = Device.objects.filter(pk__in=device_ids).exclude(
        state__in=layering.INELIGIBLE_STATES
    )
    services.recompute(
        device_ids=list(eligible.values_list("pk", flat=True)),
        actor=system_actor("configuration"),
    )
