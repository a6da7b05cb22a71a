"""Provisioning templates applied on activation (zero-touch provisioning).

The templates that apply to a device of profile P in organization O are, from weakest to
strongest: the ones naming P owned by P's manufacturer (the profile's defaults), then, for each
organization on the path from the top of the tree down to O, its organization-wide template and
then its template naming P. Later ones override earlier ones key by key (``configuration`` and
``software`` are merged recursively); empty values never override. The result is recorded on the
device (``Device.provisioning``) the first time it becomes active, and never re-applied by a
later activation (resume, exit maintenance): what a device got is history, not a live link.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from apps.accounts.models import Organization
from apps.core.actors import Actor
from apps.profiles.models import DeviceProfile, ProfileVersion, ProvisioningTemplate

from .models import Device


def templates_for(organization: Organization, profile: DeviceProfile) -> list[ProvisioningTemplate]:
    """The enabled templates that apply to a device of ``profile`` in ``organization``,
    weakest first."""
    path_ids = [segment for segment in organization.path.split("/") if segment]
    rows = ProvisioningTemplate.objects.filter(
        Q(profile=profile) | Q(profile__isnull=True), enabled=True
    ).filter(
        Q(organization_id__in=path_ids)
        | Q(organization_id=profile.organization_id, profile=profile)
    )
    depth = {organization_id: index for index, organization_id in enumerate(path_ids)}

    def strength(template: ProvisioningTemplate) -> tuple[int, int]:
        level = depth.get(template.organization_id.hex, -1)  # path segments are hex
        return level, 0 if template.profile_id is None else 1

    return sorted(rows, key=strength)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, recursively for objects; empty values do not override."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        elif value not in (None, "", [], {}):
            merged[key] = value
    return merged


def resolve(organization: Organization, version: ProfileVersion) -> dict[str, Any]:
    """What provisioning gives a device of ``version`` in ``organization``: the merged
    templates, over the profile version's heartbeat policy."""
    result: dict[str, Any] = {
        "templates": [],
        "configuration": {},
        "heartbeat": {
            "interval_seconds": version.heartbeat_interval_seconds,
            "missed_beats": version.heartbeat_missed_beats,
        },
        "routing_labels": [],
        "software": {},
    }
    for template in templates_for(organization, version.profile):
        result["templates"].append({"id": str(template.pk), "name": template.name})
        result["configuration"] = merge(result["configuration"], template.configuration)
        result["software"] = merge(result["software"], template.software)
        heartbeat = {
            "interval_seconds": template.heartbeat_interval_seconds,
            "missed_beats": template.heartbeat_missed_beats,
        }
        result["heartbeat"] = merge(result["heartbeat"], heartbeat)
        if template.routing_labels:
            result["routing_labels"] = list(template.routing_labels)
    return result


def on_activation(
    organization: Organization, version: ProfileVersion, *, transition: str, applied_at: str = ""
) -> dict[str, Any]:
    """The value recorded in ``Device.provisioning`` when a device of ``version`` in
    ``organization`` first becomes active through ``transition`` (at ``applied_at``, now when
    not given)."""
    applied = {"applied_at": applied_at or timezone.now().isoformat(), "transition": transition}
    return {**resolve(organization, version), **applied}


def apply_on_activation(*, device_ids: list[uuid.UUID], actor: Actor, transition: str) -> None:
    """Lifecycle hook (activate, approve): record provisioning on the devices that never got it.
    Set-based: one UPDATE per distinct (organization, profile version) among them."""
    pending = Device.objects.filter(pk__in=device_ids, provisioning={})
    now = timezone.now().isoformat()
    for organization, version in _pairs(pending, device_ids):
        value = on_activation(organization, version, transition=transition, applied_at=now)
        pending.filter(organization_id=organization.pk, profile_version_id=version.pk).update(
            provisioning=value
        )


def _pairs(
    pending: QuerySet[Device], device_ids: list[uuid.UUID]
) -> list[tuple[Organization, ProfileVersion]]:
    """The distinct (organization, profile version) of the pending devices: one query for one
    device (an enrollment, a single transition), three for a batch."""
    if len(device_ids) == 1:
        device = pending.select_related("organization", "profile_version__profile").first()
        return [] if device is None else [(device.organization, device.profile_version)]
    pairs = list(pending.values_list("organization_id", "profile_version_id").distinct())
    organizations = Organization.objects.in_bulk({pair[0] for pair in pairs})
    versions = ProfileVersion.objects.select_related("profile").in_bulk({pair[1] for pair in pairs})
    return [(organizations[pair[0]], versions[pair[1]]) for pair in pairs]
