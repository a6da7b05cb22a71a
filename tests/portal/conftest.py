from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress

from apps.accounts.models import Organization, User
from apps.accounts.roles import Role
from tests.factories import make_member


def verified_member(organization: Organization, role: str, email: str) -> User:
    """A member whose email allauth considers verified (mandatory verification in tests)."""
    user = make_member(organization, role, email=email)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


@pytest.fixture
def people(tree: dict[str, Organization]) -> dict[str, User]:
    acme = tree["acme"]
    return {
        "owner": verified_member(acme, Role.OWNER, "owner@acme.test"),
        "admin": verified_member(acme, Role.ADMIN, "admin@acme.test"),
        "viewer": verified_member(acme, Role.VIEWER, "viewer@acme.test"),
        "approver": verified_member(acme, Role.APPROVER, "approver@acme.test"),
        "billing": verified_member(acme, Role.BILLING, "billing@acme.test"),
        "stranger": verified_member(tree["globex"], Role.OWNER, "owner@globex.test"),
    }
