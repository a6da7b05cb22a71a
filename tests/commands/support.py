"""Builders for the command tests: a profile version with a command catalog, devices, and
command change requests created, approved when needed and executed through the real
change-request services."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta
from typing import Any

from django.utils import timezone

from apps.accounts.models import Organization
from apps.changes import execution
from apps.changes import services as change_services
from apps.changes.models import ChangeRequest
from apps.commands.models import Command
from apps.core.actors import SYSTEM, Actor
from apps.devices.choices import DeviceState
from apps.devices.models import Device
from apps.profiles import services as profile_services
from apps.profiles.models import ProfileVersion

_serials = itertools.count(1)

CATALOG: list[dict[str, Any]] = [
    {"name": "ping", "schema": {"type": "object", "additionalProperties": False}},
    {
        "name": "set_log_level",
        "description": "Change the agent's log level.",
        "schema": {
            "type": "object",
            "properties": {"level": {"type": "string", "enum": ["debug", "info", "warning"]}},
            "required": ["level"],
            "additionalProperties": False,
        },
    },
    {"name": "reboot", "criticality": "critical", "schema": {"type": "object"}},
]


def make_version(
    organization: Organization, name: str = "Sensor", catalog: list[dict[str, Any]] | None = None
) -> ProfileVersion:
    profile = profile_services.profile_create(actor=SYSTEM, organization=organization, name=name)
    version = ProfileVersion.objects.get(profile=profile, number=1)
    version.command_catalog = CATALOG if catalog is None else catalog
    version.save(update_fields=["command_catalog"])
    return version


def make_device(
    version: ProfileVersion, organization: Organization, state: str = DeviceState.ACTIVE
) -> Device:
    """A device written directly (no audit, no event): a starting state for a test."""
    return Device.objects.create(
        organization=organization,
        manufacturer_id=version.profile.organization_id,
        profile_version=version,
        serial=f"CMD-{next(_serials):06d}",
        state=state,
    )


def create(
    organization: Organization,
    target: dict[str, Any],
    *,
    command: str = "ping",
    arguments: dict[str, Any] | None = None,
    actor: Actor = SYSTEM,
    expires_in: timedelta = timedelta(hours=1),
    **spec: Any,
) -> ChangeRequest:
    return change_services.change_request_create(
        actor=actor,
        organization=organization,
        kind="command",
        title=f"{command} test",
        spec={"command": command, "arguments": arguments or {}, **spec},
        target=target,
        expires_at=timezone.now() + expires_in,
    )


def run(organization: Organization, devices: list[Device], **options: Any) -> ChangeRequest:
    """Create and execute a command request on ``devices``: one device, or a filter on a tag
    given to these devices only."""
    target: dict[str, Any] = {"device": str(devices[0].pk)}
    if len(devices) > 1:
        tag = f"run-{next(_serials)}"
        Device.objects.filter(pk__in=[d.pk for d in devices]).update(tags=[tag])
        target = {"filter": {"tags_any": [tag]}}
    request = create(organization, target, **options)
    return execution.change_request_execute(actor=SYSTEM, request=request)


def commands_of(request: ChangeRequest) -> dict[uuid.UUID, Command]:
    """The request's commands by device id."""
    return {c.device_id: c for c in Command.objects.filter(request=request)}
