from __future__ import annotations

from collections.abc import Iterator

import pytest

from apps.accounts.models import Organization
from apps.devices.models import Device
from apps.profiles.models import ProfileVersion
from tests.authz import authz_world  # noqa: F401

from .support import FakeKind, install, make_device, make_version


@pytest.fixture
def fake() -> Iterator[FakeKind]:
    yield from install(FakeKind())


@pytest.fixture
def fake_configuration() -> Iterator[FakeKind]:
    yield from install(FakeKind(name="configuration", configuration=True))


@pytest.fixture
def version(tree: dict[str, Organization]) -> ProfileVersion:
    return make_version(tree["acme"])


@pytest.fixture
def devices(tree: dict[str, Organization], version: ProfileVersion) -> list[Device]:
    """Three active devices of acme, one of retail (below acme), one of globex (a sibling)."""
    acme, retail, globex = tree["acme"], tree["retail"], tree["globex"]
    return [
        make_device(version, acme),
        make_device(version, acme),
        make_device(version, acme),
        make_device(version, retail),
        make_device(make_version(globex, "Globex sensor"), globex),
    ]
