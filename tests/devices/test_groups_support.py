"""Builders shared by the device-group tests (no tests here)."""

from __future__ import annotations

from typing import Any

from django.utils.text import slugify

from apps.accounts.models import Organization
from apps.devices.models import Device, DeviceGroup, GroupMembership
from apps.profiles.models import DeviceProfile, ProfileVersion


def make_version(organization: Organization, name: str = "Sensor") -> ProfileVersion:
    profile = DeviceProfile.objects.create(organization=organization, name=name, slug=slugify(name))
    return ProfileVersion.objects.create(profile=profile, number=1)


def make_device(
    organization: Organization, version: ProfileVersion, serial: str, **fields: Any
) -> Device:
    return Device.objects.create(
        organization=organization,
        manufacturer=version.profile.organization,
        profile_version=version,
        serial=serial,
        **fields,
    )


def make_group(
    organization: Organization, name: str, *, devices: list[Device] = (), **fields: Any
) -> DeviceGroup:
    group = DeviceGroup.objects.create(organization=organization, name=name, **fields)
    GroupMembership.objects.bulk_create(
        [GroupMembership(group=group, device=device) for device in devices]
    )
    return group


def serials(devices: Any) -> list[str]:
    return sorted(device.serial for device in devices)
