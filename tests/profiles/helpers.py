"""Builders shared by the profiles tests."""

from __future__ import annotations

import itertools
from typing import Any

from apps.accounts.models import Organization
from apps.core.actors import SYSTEM
from apps.devices.models import Device
from apps.profiles import services
from apps.profiles.models import DeviceProfile, ProfileVersion

_serial = itertools.count(1)

TELEMETRY = {
    "metrics": [
        {
            "name": "temperature",
            "unit": "°C",
            "source": "env.temp_f",
            "convert": {"from": "°F"},
            "min": -40,
            "max": 125,
        },
        {"name": "door_open", "type": "bool", "source": "door"},
    ]
}
COMMANDS = [
    {"name": "reboot", "schema": {"type": "object"}, "criticality": "normal"},
    {
        "name": "factory-reset",
        "schema": {"type": "object", "properties": {"wipe": {"type": "boolean"}}},
        "criticality": "critical",
        "description": "Erase everything",
    },
]
ATTRIBUTES = {
    "type": "object",
    "properties": {
        "color": {"type": "string", "enum": ["red", "blue"]},
        "location": {"type": "object", "properties": {"floor": {"type": "integer"}}},
    },
    "required": ["color"],
}


def make_profile(organization: Organization, name: str = "Sensor", **fields: Any) -> DeviceProfile:
    return services.profile_create(actor=SYSTEM, organization=organization, name=name, **fields)


def version_of(profile: DeviceProfile, number: int = 1) -> ProfileVersion:
    return ProfileVersion.objects.get(profile=profile, number=number)


def make_device(version: ProfileVersion, organization: Organization, **fields: Any) -> Device:
    return Device.objects.create(
        organization=organization,
        manufacturer_id=version.profile.organization_id,
        profile_version=version,
        serial=fields.pop("serial", f"SN-{next(_serial):05d}"),
        **fields,
    )
