"""Writes for the device catalog: profiles, their versions, and moving devices between versions.

A version that no device uses is edited in place; once a device uses it, a change makes the
next version and devices move to it only through ``profile_upgrade_devices`` (explicit,
audited). Every write records its audit rows and domain event in its transaction. Front doors
check that the actor may act on the organization or the profile; the services enforce the rules.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from typing import Any

from django.core.exceptions import EmptyResultSet, ValidationError
from django.db import connection, transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.accounts.models import Organization
from apps.core import audit, events
from apps.core.actors import Actor
from apps.core.context import get_request_id
from apps.core.models import AuditLog
from apps.devices.models import Device
from apps.devices.selection import selection_q

from .models import DeviceProfile, ProfileVersion
from .validation import VERSION_FIELDS, attributes_errors, version_field_errors

__all__ = [
    "PROFILE_FIELDS",
    "VERSION_FIELDS",
    "attributes_errors",
    "profile_create",
    "profile_update",
    "profile_upgrade_devices",
]

PROFILE_FIELDS = ("name", "slug", "description")


def _check(fields: dict[str, Any]) -> None:
    unknown = set(fields) - set(VERSION_FIELDS) - set(PROFILE_FIELDS)
    errors: dict[str, list[str]] = {
        name: ["This field cannot be set here."] for name in sorted(unknown)
    }
    errors.update(version_field_errors({k: v for k, v in fields.items() if k in VERSION_FIELDS}))
    if "name" in fields and not str(fields["name"]).strip():
        errors["name"] = ["This field may not be blank."]
    if errors:
        raise ValidationError(errors)


def _unique_slug(organization: Organization, name: str, slug: str, exclude: Any = None) -> str:
    slug = slug or slugify(name)[:80] or "profile"
    taken = DeviceProfile.objects.filter(organization=organization, slug=slug)
    if exclude is not None:
        taken = taken.exclude(pk=exclude)
    if taken.exists():
        raise ValidationError({"slug": ["This organization already has a profile with this slug."]})
    return slug


def _version_payload(version: ProfileVersion) -> dict[str, Any]:
    return {
        "profile": str(version.profile_id),
        "version": str(version.pk),
        "number": version.number,
    }


@transaction.atomic
def profile_create(
    *,
    actor: Actor,
    organization: Organization,
    name: str,
    slug: str = "",
    description: str = "",
    **version_fields: Any,
) -> DeviceProfile:
    """Create a profile of ``organization`` with its version 1."""
    _check({"name": name, **version_fields})
    profile = DeviceProfile(
        organization=organization,
        name=name.strip(),
        slug=_unique_slug(organization, name, slug),
        description=description,
        latest_number=1,
    )
    profile.full_clean()
    profile.save()
    version = ProfileVersion(profile=profile, number=1, created_by_id=actor.user_id)
    for field_name, value in version_fields.items():
        setattr(version, field_name, value)
    version.save()
    snapshot = audit.snapshot(profile, PROFILE_FIELDS) | audit.snapshot(version, VERSION_FIELDS)
    audit.record(
        actor=actor, action="profile.create", obj=profile, changes=audit.diff({}, snapshot)
    )
    events.emit(
        "profile.created",
        organization_id=organization.pk,
        payload={**_version_payload(version), "name": profile.name},
        subject=profile,
    )
    return profile


def _in_use(version: ProfileVersion) -> bool:
    return Device.objects.filter(profile_version=version).exists()


def _next_version(latest: ProfileVersion, actor: Actor) -> ProfileVersion:
    copy = ProfileVersion(
        profile_id=latest.profile_id, number=latest.number + 1, created_by_id=actor.user_id
    )
    for field_name in VERSION_FIELDS:
        setattr(copy, field_name, getattr(latest, field_name))
    return copy


@transaction.atomic
def profile_update(*, actor: Actor, profile: DeviceProfile, **fields: Any) -> ProfileVersion:
    """Change a profile's name, slug or description and its latest version's fields.

    The latest version is edited in place while no device uses it; otherwise the changes make
    version ``latest + 1``. Returns the profile's latest version after the change.
    """
    _check(fields)
    profile = DeviceProfile.objects.select_for_update(of=("self",)).get(pk=profile.pk)
    latest = ProfileVersion.objects.get(profile=profile, number=profile.latest_number)
    changes = _apply_profile_fields(profile, fields)
    version_fields = {k: v for k, v in fields.items() if k in VERSION_FIELDS}
    before = audit.snapshot(latest, VERSION_FIELDS)
    version_changes = audit.diff(before, {**before, **version_fields})
    if version_changes and _in_use(latest):
        latest = _create_version(actor, profile, latest, version_fields, version_changes)
    elif version_changes:
        for field_name, value in version_fields.items():
            setattr(latest, field_name, value)
        latest.save()
        changes |= {"version": [latest.number, latest.number], **version_changes}
    if changes:
        audit.record(actor=actor, action="profile.update", obj=profile, changes=changes)
        events.emit(
            "profile.updated",
            organization_id=profile.organization_id,
            payload={**_version_payload(latest), "changes": sorted(changes)},
            subject=profile,
        )
    return latest


def _apply_profile_fields(profile: DeviceProfile, fields: dict[str, Any]) -> dict[str, Any]:
    """Save the profile-level fields among ``fields``; the changes made."""
    wanted = {k: v for k, v in fields.items() if k in PROFILE_FIELDS}
    if "slug" in wanted:
        wanted["slug"] = _unique_slug(profile.organization, "", wanted["slug"], profile.pk)
    if "name" in wanted:
        wanted["name"] = str(wanted["name"]).strip()
    before = audit.snapshot(profile, PROFILE_FIELDS)
    changes = audit.diff(before, {**before, **wanted})
    if changes:
        for field_name, value in wanted.items():
            setattr(profile, field_name, value)
        profile.full_clean()
        profile.save()
    return changes


def _create_version(
    actor: Actor,
    profile: DeviceProfile,
    latest: ProfileVersion,
    version_fields: dict[str, Any],
    changes: dict[str, Any],
) -> ProfileVersion:
    version = _next_version(latest, actor)
    for field_name, value in version_fields.items():
        setattr(version, field_name, value)
    version.save()
    profile.latest_number = version.number
    profile.save(update_fields=["latest_number", "updated_at"])
    audit.record(
        actor=actor,
        action="profile.version_create",
        obj=profile,
        changes={"version": [latest.number, version.number], **changes},
    )
    events.emit(
        "profile.version_created",
        organization_id=profile.organization_id,
        payload={**_version_payload(version), "previous": str(latest.pk)},
        subject=profile,
    )
    return version


# --- moving devices between versions -----------------------------------------------------------

UPGRADE_SQL = """
WITH target AS (
    SELECT id, profile_version_id FROM devices_device WHERE id IN ({selected}) FOR UPDATE
)
UPDATE devices_device AS device
SET profile_version_id = %s, updated_at = %s
FROM target
WHERE device.id = target.id
RETURNING device.id, target.profile_version_id, device.organization_id, device.name, device.serial
"""


def _upgradable(
    actor: Actor,
    version: ProfileVersion,
    device_ids: Collection[uuid.UUID] | None,
    selection: Mapping[str, Any] | None,
) -> Any:
    if (device_ids is None) == (selection is None):
        raise ValidationError({"devices": ["Give either a list of devices or a filter."]})
    devices = (
        Device.objects.for_actor(actor, "change")
        .filter(profile_version__profile_id=version.profile_id)
        .exclude(profile_version=version)
    )
    if device_ids is not None:
        return devices.filter(pk__in=list(device_ids))
    try:
        return devices.filter(selection_q(dict(selection or {})))
    except ValidationError as error:
        raise ValidationError({"filter": error.messages}) from None


@transaction.atomic
def profile_upgrade_devices(
    *,
    actor: Actor,
    version: ProfileVersion,
    device_ids: Collection[uuid.UUID] | None = None,
    selection: Mapping[str, Any] | None = None,
) -> int:
    """Move the chosen devices of ``version``'s profile that ``actor`` may change to ``version``,
    in one set-based UPDATE; one audit row per device and one event. Returns how many moved."""
    from apps.devices.services import hold_profile_versions  # devices.services imports us

    hold_profile_versions([version.pk])  # no in-place edit of ``version`` while it gains devices
    devices = _upgradable(actor, version, device_ids, selection)
    try:
        selected, params = devices.values("pk").query.sql_with_params()
    except EmptyResultSet:  # nothing can match (no ids, or no scope at all)
        return 0
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(UPGRADE_SQL.format(selected=selected), [*params, version.pk, now])
        moved = cursor.fetchall()
    if not moved:
        return 0
    _audit_upgrades(actor, version, moved, now)
    previous: dict[str, int] = {}
    for row in moved:
        previous[str(row[1])] = previous.get(str(row[1]), 0) + 1
    events.emit(
        "profile.devices_upgraded",
        organization_id=version.profile.organization_id,
        payload={**_version_payload(version), "upgraded": len(moved), "from": previous},
        subject=version,
    )
    return len(moved)


def _audit_upgrades(
    actor: Actor, version: ProfileVersion, moved: list[tuple[Any, ...]], now: Any
) -> None:
    common = {
        "created_at": now,
        "actor_kind": str(actor.kind),
        "actor_user_id": actor.user_id,
        "actor_api_key_id": actor.api_key_id,
        "actor_device_id": actor.device_id,
        "actor_label": actor.label[:255],
        "source": actor.source,
        "action": "device.profile_upgrade",
        "object_type": Device._meta.label_lower,
        "request_id": get_request_id(),
    }
    AuditLog.objects.bulk_create(
        (
            AuditLog(
                organization_id=organization_id,
                object_id=str(device_id),
                object_repr=(name or serial)[:255],
                changes={"profile_version": [str(old_version), str(version.pk)]},
                **common,
            )
            for device_id, old_version, organization_id, name, serial in moved
        ),
        batch_size=5000,
    )
