from __future__ import annotations

import pytest

from apps.accounts.models import Organization
from apps.profiles.models import ProfileVersion
from tests.authz import authz_world  # noqa: F401

from .support import make_version


@pytest.fixture
def version(tree: dict[str, Organization]) -> ProfileVersion:
    return make_version(tree["acme"])
