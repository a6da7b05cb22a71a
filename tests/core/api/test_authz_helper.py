"""The matrix helper itself must be able to fail: a lenient helper would hide leaks."""

from __future__ import annotations

import itertools

import pytest

from apps.accounts.models import Membership
from apps.accounts.roles import Role
from tests.authz import Call, Case, assert_authz_matrix
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def retail_viewer(world) -> Membership:
    return Membership.objects.create(
        organization=world.tree["retail"], user=UserFactory(), role=Role.VIEWER
    )


def delete_case(**overrides) -> Case:
    values = {
        "permission": "membership.delete",
        "allowed": {Role.OWNER, Role.ADMIN},
        "setup": retail_viewer,
        "request": lambda a: Call("delete", f"/api/v1/memberships/{a.target.pk}/"),
        "status": 204,
        "expect": lambda a, response: None,
    }
    values.update(overrides)
    return Case(**values)


def test_it_passes_a_correct_case(authz_world):
    assert_authz_matrix(authz_world, delete_case())


def test_it_fails_when_a_refused_role_is_declared_allowed(authz_world):
    with pytest.raises(AssertionError, match="viewer of Acme"):
        assert_authz_matrix(authz_world, delete_case(allowed={Role.OWNER, Role.ADMIN, Role.VIEWER}))


def test_it_fails_when_an_allowed_role_is_left_out(authz_world):
    with pytest.raises(AssertionError, match="admin of Acme"):
        assert_authz_matrix(authz_world, delete_case(allowed={Role.OWNER}))


def test_it_fails_when_a_refusal_changes_state(authz_world):
    counter = itertools.count()
    with pytest.raises(AssertionError, match="refused, yet something changed"):
        assert_authz_matrix(authz_world, delete_case(state=lambda a: next(counter)))


def test_it_fails_when_the_allowed_outcome_is_wrong(authz_world):
    def expect(attempt, response):
        assert Membership.objects.filter(pk=attempt.target.pk).exists()

    with pytest.raises(AssertionError):
        assert_authz_matrix(authz_world, delete_case(expect=expect))


def test_it_rolls_back_every_attempt(authz_world):
    before = Membership.objects.count()
    assert_authz_matrix(authz_world, delete_case())
    assert Membership.objects.count() == before
