from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.cache import cache

from tests.authz import authz_world  # noqa: F401


def _clear_enrollment_keys() -> None:
    """Forget this test database's rate-limit windows, nonces and counters (only those)."""
    client = cache._cache.get_client(write=True)  # type: ignore[attr-defined]
    pattern = cache.make_key("enroll:") + "*"
    keys = list(client.scan_iter(match=pattern, count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def fresh_enrollment_cache() -> Iterator[None]:
    _clear_enrollment_keys()
    yield
    _clear_enrollment_keys()
