"""Reads of configuration management, always scoped to the actor (``configuration.view``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, QuerySet
from django.http import Http404

from apps.core.actors import Actor
from apps.core.scoping import organization_ids_under
from apps.devices.models import Device

from . import documents, layering
from .choices import SyncStatus
from .models import ConfigurationVersion, DeviceConfigurationState


def state_list(*, actor: Actor, status: str = "") -> QuerySet[DeviceConfigurationState]:
    """Per-device desired/reported states the actor may see, optionally of one status."""
    states = DeviceConfigurationState.objects.for_actor(actor, "view").select_related("device")
    return states.filter(status=status) if status else states


def state_counts(*, actor: Actor) -> dict[str, int]:
    """How many devices are in each sync status (every status present, ``total`` too)."""
    rows = (
        DeviceConfigurationState.objects.for_actor(actor, "view")
        .order_by()
        .values_list("status")
        .annotate(count=Count("pk"))
    )
    counts = dict.fromkeys(SyncStatus.values, 0)
    counts.update(dict(rows))
    counts["total"] = sum(counts[status] for status in SyncStatus.values)
    return counts


def visible_devices(*, actor: Actor) -> QuerySet[Device]:
    """Devices whose configuration the actor may see."""
    if actor.is_platform_staff:
        return Device.objects.all()
    paths = actor.paths_for("configuration.view")
    if not paths:
        return Device.objects.none()
    return Device.objects.filter(organization__in=organization_ids_under(paths))


def access_device(*, actor: Actor, device_id: Any) -> Device:
    """The device if its configuration is visible to the actor; 404 otherwise (missing and
    forbidden look the same)."""
    try:
        parsed = uuid.UUID(str(device_id))
    except ValueError:
        raise Http404 from None
    device = visible_devices(actor=actor).filter(pk=parsed).select_related("organization").first()
    if device is None:
        raise Http404
    return device


def version_list(*, device: Device) -> QuerySet[ConfigurationVersion]:
    """The device's history, newest first (the caller checked access to the device)."""
    return ConfigurationVersion.objects.filter(device=device).order_by("-version")


@dataclass
class VersionDiff:
    version: ConfigurationVersion
    against: int | None
    diff: list[dict[str, Any]]


def version_diff(*, device: Device, number: int, against: int | None = None) -> VersionDiff:
    """Version ``number`` of the device and its diff from ``against`` (the previous version
    when not given); Http404 when either does not exist."""
    version = ConfigurationVersion.objects.filter(device=device, version=number).first()
    if version is None:
        raise Http404
    base_number = number - 1 if against is None else against
    base = ConfigurationVersion.objects.filter(device=device, version=base_number).first()
    if base is None and against is not None:
        raise Http404
    before = base.document if base is not None else {}
    return VersionDiff(
        version=version,
        against=base.version if base is not None else None,
        diff=documents.diff(before, version.document),
    )


def effective_now(*, device: Device) -> layering.Effective:
    """The device's effective configuration computed from its layers now (a change outside a
    change request, such as a new group membership, shows here before it becomes desired)."""
    return layering.compute([device.pk])[device.pk]
