"""A tiny test-only kind (``fake``) and builders for the change-request tests.

``FakeKind`` validates ``{"action": str, "critical": bool, "keys": [str], "profiles": [id]}``
and reports a command's criticality; ``FakeKind(name="configuration", configuration=True)``
reports the configuration keys instead (keys starting with ``!`` count as marked critical by
the schema). Both record every execute / cancel call so tests assert exactly what ran.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError

from apps.accounts.models import Organization
from apps.changes import kinds
from apps.changes.kinds import DevicePreview, Facts
from apps.changes.models import ChangeRequest
from apps.core.actors import SYSTEM, Actor
from apps.devices.choices import DeviceState
from apps.devices.models import Device
from apps.profiles import services as profile_services
from apps.profiles.models import ProfileVersion

_serials = itertools.count(1)


@dataclass
class FakeKind:
    """Records what the mechanism asked of it."""

    name: str = "fake"
    configuration: bool = False
    executed: list[tuple[uuid.UUID, list[uuid.UUID], str]] = field(default_factory=list)
    cancelled: list[uuid.UUID] = field(default_factory=list)

    def validate(self, *, organization: Organization, spec: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(spec, dict) or not isinstance(spec.get("action"), str):
            raise ValidationError({"spec": ["action: a string is required."]})
        keys = spec.get("keys", [])
        if not isinstance(keys, list):
            raise ValidationError({"spec": ["keys: a list."]})
        return {"action": spec["action"], "critical": bool(spec.get("critical")), "keys": keys}

    def facts(self, *, request: ChangeRequest) -> Facts:
        profiles = frozenset(uuid.UUID(p) for p in request.spec.get("profiles", []))
        if self.configuration:
            keys = frozenset(request.spec["keys"])
            return Facts(
                configuration_keys=keys,
                profile_ids=profiles,
                critical_configuration_keys=frozenset(k for k in keys if k.startswith("!")),
            )
        level = "critical" if request.spec["critical"] else "normal"
        return Facts(criticality=level, profile_ids=profiles)

    def preview(
        self, *, request: ChangeRequest, device_ids: list[uuid.UUID]
    ) -> list[DevicePreview]:
        devices = Device.objects.in_bulk(device_ids)
        return [
            DevicePreview(
                device_id=pk,
                serial=devices[pk].serial,
                summary=f"would run {request.spec['action']}",
                diff=[
                    {"op": "replace", "path": "/action", "from": None, "to": request.spec["action"]}
                ],
            )
            for pk in device_ids
        ]

    def execute(self, *, request: ChangeRequest, device_ids: list[uuid.UUID], actor: Actor) -> None:
        self.executed.append((request.pk, list(device_ids), actor.label))

    def cancel(self, *, request: ChangeRequest, actor: Actor) -> int:
        self.cancelled.append(request.pk)
        return 2

    def progress(self, *, request: ChangeRequest) -> dict[str, int]:
        return {"total": request.device_count, "succeeded": request.device_count}


def install(kind: FakeKind) -> Iterator[FakeKind]:
    """Register ``kind`` for one test, restoring whatever held its name before."""
    before = kinds._KINDS.get(kind.name)
    kinds.register(kind)
    try:
        yield kind
    finally:
        if before is None:
            kinds._KINDS.pop(kind.name, None)
        else:
            kinds._KINDS[kind.name] = before


def make_version(organization: Organization, name: str = "Sensor") -> ProfileVersion:
    profile = profile_services.profile_create(actor=SYSTEM, organization=organization, name=name)
    return ProfileVersion.objects.get(profile=profile, number=1)


def make_device(
    version: ProfileVersion, organization: Organization, state: str = DeviceState.ACTIVE
) -> Device:
    """A device written directly (no audit, no event): a starting state for a test."""
    return Device.objects.create(
        organization=organization,
        manufacturer_id=version.profile.organization_id,
        profile_version=version,
        serial=f"CR-{next(_serials):06d}",
        state=state,
    )
