from __future__ import annotations

import pytest

from apps.accounts.models import Organization
from apps.devices.models import Device
from apps.profiles.models import ProfileVersion
from tests.authz import authz_world  # noqa: F401

from .support import make_device, make_version


@pytest.fixture
def version(tree: dict[str, Organization]) -> ProfileVersion:
    return make_version(tree["acme"])


@pytest.fixture
def devices(tree: dict[str, Organization], version: ProfileVersion) -> list[Device]:
    """Three active devices of acme and one of retail (below acme), one profile."""
    acme, retail = tree["acme"], tree["retail"]
    return [
        make_device(version, acme),
        make_device(version, acme),
        make_device(version, acme),
        make_device(version, retail),
    ]
