"""Shared fixtures of the telemetry tests: a profile with a telemetry schema and an active
device of acme, and a builder of raw uplink messages."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

import orjson
import pytest
from django.utils import timezone

from apps.accounts.models import Organization
from apps.core.actors import SYSTEM
from apps.devices.choices import DeviceState
from apps.devices.models import Device
from apps.profiles import services as profile_services
from apps.profiles.models import ProfileVersion
from apps.telemetry.pipeline import caches
from apps.telemetry.types import Incoming

TELEMETRY_SCHEMA: dict[str, Any] = {
    "metrics": [
        {"name": "temperature", "type": "float", "unit": "°C", "min": -40, "max": 125},
        {"name": "humidity", "type": "float", "unit": "%", "min": 0, "max": 100},
        {"name": "battery_pct", "type": "float", "unit": "%", "min": 0, "max": 100},
    ]
}
_serials = itertools.count(1)


def make_version(organization: Organization, name: str = "Thermo") -> ProfileVersion:
    """Version 1 of a new profile of ``organization`` with ``TELEMETRY_SCHEMA``."""
    profile = profile_services.profile_create(
        actor=SYSTEM, organization=organization, name=name, telemetry_schema=TELEMETRY_SCHEMA
    )
    return ProfileVersion.objects.get(profile=profile, number=1)


def make_device(
    version: ProfileVersion, organization: Organization, state: str = DeviceState.ACTIVE
) -> Device:
    """A device written directly (no audit, no event): a starting state for a test."""
    return Device.objects.create(
        organization=organization,
        manufacturer_id=version.profile.organization_id,
        profile_version=version,
        serial=f"TH-{next(_serials):06d}",
        state=state,
    )


def message(
    device: Device | str,
    kind: str = "telemetry",
    received_at: datetime | None = None,
    raw: bytes | None = None,
    **body: Any,
) -> Incoming:
    """A raw uplink message of ``device`` on ``devices/<id>/<kind>`` with ``body`` as JSON."""
    device_id = device if isinstance(device, str) else str(device.pk)
    return Incoming(
        topic=f"devices/{device_id}/{kind}",
        payload=raw if raw is not None else orjson.dumps(body),
        received_at=received_at or timezone.now(),
    )


@pytest.fixture(autouse=True)
def _fresh_pipeline_caches() -> None:
    caches.clear()  # device and schema facts must not leak from one test to the next


@pytest.fixture
def telemetry_version(tree: dict[str, Organization]) -> ProfileVersion:
    return make_version(tree["acme"])


@pytest.fixture
def device(tree: dict[str, Organization], telemetry_version: ProfileVersion) -> Device:
    return make_device(telemetry_version, tree["acme"])
