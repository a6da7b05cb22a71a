from __future__ import annotations

from tests.authz import authz_world  # noqa: F401
