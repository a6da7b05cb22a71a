"""Writes of provisioning templates: what a device gets when it is activated.

A template belongs to an organization and, optionally, names a profile. How templates stack
(the profile's manufacturer first, then each organization down the device's path, a template
naming the profile over the organization-wide one) is ``apps.devices.provisioning.resolve``;
``provisioning_preview`` answers "what would a device of this profile get here?" with it.

An organization has at most one enabled template per profile (and one organization-wide one).
A template may name a profile only when devices of that profile can live in the organization's
subtree: the profile is owned on the organization's path (shared down to it) or below it.
Every write is audited in its transaction.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from apps.accounts.models import Organization
from apps.core import audit
from apps.core.actors import Actor

from .models import DeviceProfile, ProfileVersion, ProvisioningTemplate
from .validation import MAX_HEARTBEAT_SECONDS, MAX_MISSED_BEATS

TEMPLATE_FIELDS = (
    "name",
    "profile",
    "configuration",
    "heartbeat_interval_seconds",
    "heartbeat_missed_beats",
    "routing_labels",
    "software",
    "enabled",
)
MAX_JSON_BYTES = 65_536
MAX_LABELS = 32
DUPLICATE = "This organization already has an enabled template for this profile."
DUPLICATE_WIDE = "This organization already has an enabled organization-wide template."


def _bounded(value: Any, low: int, high: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return f"Must be empty or a whole number from {low} to {high}."
    return None


def _object_error(value: Any, *, strings: bool = False) -> str | None:
    if not isinstance(value, dict):
        return "Must be an object."
    if len(json.dumps(value)) > MAX_JSON_BYTES:
        return f"At most {MAX_JSON_BYTES} bytes of JSON."
    if strings and not all(isinstance(item, str) for item in value.values()):
        return 'Must map each component to a version string, e.g. {"firmware": "1.4.2"}.'
    return None


def _labels_error(value: Any) -> str | None:
    if not isinstance(value, list | tuple) or len(value) > MAX_LABELS:
        return f"Must be a list of at most {MAX_LABELS} labels."
    if not all(isinstance(item, str) and 0 < len(item.strip()) <= 64 for item in value):
        return "Each label must have 1 to 64 characters."
    return None


def _profile_error(organization: Organization, profile: DeviceProfile | None) -> str | None:
    if profile is None:
        return None
    owner = profile.organization.path
    if organization.path.startswith(owner) or owner.startswith(organization.path):
        return None
    return "Devices of this profile cannot be in this organization."


def _errors(organization: Organization, values: dict[str, Any]) -> dict[str, str]:
    checks = {
        "name": None if str(values["name"]).strip() else "This field may not be blank.",
        "profile": _profile_error(organization, values["profile"]),
        "configuration": _object_error(values["configuration"]),
        "software": _object_error(values["software"], strings=True),
        "routing_labels": _labels_error(values["routing_labels"]),
        "heartbeat_interval_seconds": _bounded(
            values["heartbeat_interval_seconds"], 1, MAX_HEARTBEAT_SECONDS
        ),
        "heartbeat_missed_beats": _bounded(values["heartbeat_missed_beats"], 1, MAX_MISSED_BEATS),
    }
    if len(str(values["name"])) > 200:
        checks["name"] = "At most 200 characters."
    return {name: message for name, message in checks.items() if message}


def _save(template: ProvisioningTemplate) -> None:
    try:
        with transaction.atomic():
            template.save()
    except IntegrityError:
        message = DUPLICATE if template.profile_id else DUPLICATE_WIDE
        raise ValidationError({"profile": message}) from None


@transaction.atomic
def template_create(
    *,
    actor: Actor,
    organization: Organization,
    name: str,
    profile: DeviceProfile | None = None,
    configuration: dict[str, Any] | None = None,
    heartbeat_interval_seconds: int | None = None,
    heartbeat_missed_beats: int | None = None,
    routing_labels: list[str] | tuple[str, ...] = (),
    software: dict[str, str] | None = None,
    enabled: bool = True,
) -> ProvisioningTemplate:
    """Create a template of ``organization`` (for ``profile``, or organization-wide)."""
    values: dict[str, Any] = {
        "name": name,
        "profile": profile,
        "configuration": {} if configuration is None else configuration,
        "heartbeat_interval_seconds": heartbeat_interval_seconds,
        "heartbeat_missed_beats": heartbeat_missed_beats,
        "routing_labels": list(routing_labels),
        "software": {} if software is None else software,
        "enabled": enabled,
    }
    errors = _errors(organization, values)
    if errors:
        raise ValidationError(errors)
    values["name"] = str(values["name"]).strip()
    values["routing_labels"] = [label.strip() for label in values["routing_labels"]]
    template = ProvisioningTemplate(organization=organization, **values)
    _save(template)
    audit.record(
        actor=actor,
        action="provisioningtemplate.create",
        obj=template,
        changes=audit.diff({}, audit.snapshot(template, TEMPLATE_FIELDS)),
    )
    return template


@transaction.atomic
def template_update(
    *, actor: Actor, template: ProvisioningTemplate, **fields: Any
) -> ProvisioningTemplate:
    """Change any of ``TEMPLATE_FIELDS``. Devices already provisioned keep what they got."""
    unknown = sorted(set(fields) - set(TEMPLATE_FIELDS))
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed here."))
    template = (
        ProvisioningTemplate.objects.select_for_update(of=("self",))
        .select_related("organization", "profile__organization")
        .get(pk=template.pk)
    )
    before = audit.snapshot(template, TEMPLATE_FIELDS)
    values = {name: fields.get(name, getattr(template, name)) for name in TEMPLATE_FIELDS}
    errors = _errors(template.organization, values)
    if errors:
        raise ValidationError(errors)
    values["name"] = str(values["name"]).strip()
    values["routing_labels"] = [label.strip() for label in values["routing_labels"]]
    for name, value in values.items():
        setattr(template, name, value)
    changes = audit.diff(before, audit.snapshot(template, TEMPLATE_FIELDS))
    if changes:
        _save(template)
        audit.record(
            actor=actor, action="provisioningtemplate.update", obj=template, changes=changes
        )
    return template


@transaction.atomic
def template_delete(*, actor: Actor, template: ProvisioningTemplate) -> None:
    """Delete a template. What devices were given stays recorded on them."""
    snapshot = audit.snapshot(template, TEMPLATE_FIELDS)
    audit.record(
        actor=actor,
        action="provisioningtemplate.delete",
        obj=template,
        changes=audit.diff(snapshot, {}),
    )
    ProvisioningTemplate.objects.filter(pk=template.pk).delete()


def provisioning_preview(*, organization: Organization, profile: DeviceProfile) -> dict[str, Any]:
    """What a device of ``profile`` (its latest version) activated in ``organization`` would
    get now. The front door checks that the caller sees both."""
    from apps.devices.provisioning import resolve  # the devices app owns the resolution

    if not organization.path.startswith(profile.organization.path):
        raise ValidationError(
            {"profile": "Devices of this profile cannot be in this organization."}
        )
    version = ProfileVersion.objects.select_related("profile").get(
        profile=profile, number=profile.latest_number
    )
    return {"profile_version": str(version.pk), **resolve(organization, version)}
