"""Builders shared by the registry tests (no tests here)."""

from __future__ import annotations

from typing import Any

from apps.accounts.models import Organization
from apps.core.actors import SYSTEM
from apps.devices import services
from apps.devices.models import Device
from apps.profiles.models import DeviceProfile, ProfileVersion

SCHEMA = {
    "type": "object",
    "properties": {
        "color": {"enum": ["red", "green"]},
        "floor": {"type": "integer", "minimum": 0},
    },
    "additionalProperties": False,
}


def make_version(
    organization: Organization, slug: str = "sensor", schema: dict[str, Any] | None = None
) -> ProfileVersion:
    profile = DeviceProfile.objects.create(organization=organization, name=slug.title(), slug=slug)
    return ProfileVersion.objects.create(
        profile=profile, number=1, attributes_schema=schema or SCHEMA
    )


def make_device(
    organization: Organization, version: ProfileVersion, serial: str, **fields: Any
) -> Device:
    """A device written directly (no audit): a starting state for a test."""
    return Device.objects.create(
        organization=organization,
        manufacturer=version.profile.organization,
        profile_version=version,
        serial=serial,
        **fields,
    )


def register(
    organization: Organization, version: ProfileVersion, serial: str, **fields: Any
) -> Device:
    return services.device_register(
        actor=SYSTEM, organization=organization, profile_version=version, serial=serial, **fields
    )


def device_audit() -> Any:
    from apps.core.models import AuditLog

    return AuditLog.objects.filter(object_type="devices.device").order_by("created_at", "id")


def device_events() -> Any:
    from apps.core.models import Event

    return Event.objects.filter(subject_type="devices.device").order_by("created_at", "id")
