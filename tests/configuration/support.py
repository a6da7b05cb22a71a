"""Builders for the configuration tests: a profile version with a configuration schema,
devices, groups, and configuration change requests run through the real change-request
services."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from django.utils import timezone

from apps.accounts.models import Organization
from apps.changes import execution
from apps.changes import services as change_services
from apps.changes.models import ChangeRequest
from apps.core.actors import SYSTEM, Actor
from apps.devices.choices import DeviceState
from apps.devices.models import Device, DeviceGroup, GroupMembership
from apps.profiles import services as profile_services
from apps.profiles.models import ProfileVersion

_serials = itertools.count(1)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "brightness": {"type": "integer", "minimum": 0, "maximum": 100, "default": 50},
        "locale": {"type": "string", "default": "en"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "hostname": {"type": "string"},
        "port": {"type": "integer"},
        "network": {
            "type": "object",
            "properties": {
                "apn": {"type": "string", "default": "internet", "x-critical": True},
                "mtu": {"type": "integer"},
            },
        },
    },
}


def make_version(
    organization: Organization, schema: dict[str, Any] | None = None
) -> ProfileVersion:
    profile = profile_services.profile_create(actor=SYSTEM, organization=organization, name="Sign")
    version = ProfileVersion.objects.get(profile=profile, number=1)
    version.configuration_schema = SCHEMA if schema is None else schema
    version.save(update_fields=["configuration_schema"])
    return version


def make_device(
    version: ProfileVersion,
    organization: Organization,
    state: str = DeviceState.ACTIVE,
    **fields: Any,
) -> Device:
    """A device written directly (no audit, no event): a starting state for a test."""
    return Device.objects.create(
        organization=organization,
        manufacturer_id=version.profile.organization_id,
        profile_version=version,
        serial=fields.pop("serial", f"CFG-{next(_serials):06d}"),
        state=state,
        **fields,
    )


def make_group(organization: Organization, name: str, devices: list[Device]) -> DeviceGroup:
    group = DeviceGroup.objects.create(organization=organization, name=name)
    GroupMembership.objects.bulk_create(GroupMembership(group=group, device=d) for d in devices)
    return group


def target_of(layer: str, layer_id: Any) -> dict[str, Any]:
    if layer == "device":
        return {"device": str(layer_id)}
    if layer == "group":
        return {"group": str(layer_id)}
    return {"filter": {"organization": [str(layer_id)]}}


def create(
    organization: Organization,
    spec: dict[str, Any],
    *,
    actor: Actor = SYSTEM,
    target: dict[str, Any] | None = None,
) -> ChangeRequest:
    if target is None:
        key = "layer_id" if spec["operation"] == "set" else "device"
        target = target_of(spec.get("layer", "device"), spec[key])
    return change_services.change_request_create(
        actor=actor,
        organization=organization,
        kind="configuration",
        title="configuration test",
        spec=spec,
        target=target,
        expires_at=timezone.now() + timedelta(hours=1),
    )


def set_spec(layer: str, layer_id: Any, **fields: Any) -> dict[str, Any]:
    return {"operation": "set", "layer": layer, "layer_id": str(layer_id), **fields}


def run(organization: Organization, spec: dict[str, Any], actor: Actor = SYSTEM) -> ChangeRequest:
    """Create and execute a configuration request (it needs no approval under the default
    policy unless it touches a critical key)."""
    request = create(organization, spec, actor=actor)
    return execution.change_request_execute(actor=actor, request=request)
