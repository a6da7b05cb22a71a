from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import Membership
from apps.accounts.roles import Role
from tests.authz import Call, Case, assert_authz_matrix, error, ids, iso, last_audit
from tests.factories import UserFactory, make_member

pytestmark = pytest.mark.django_db

URL = "/api/v1/memberships/"
MANAGERS = {Role.OWNER, Role.ADMIN}
VIEWERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.APPROVER}


def membership_json(membership: Membership) -> dict[str, Any]:
    membership.refresh_from_db()
    user = membership.user
    return {
        "id": str(membership.pk),
        "organization": str(membership.organization_id),
        "user": {"id": str(user.pk), "email": user.email, "full_name": user.full_name},
        "role": membership.role,
        "created_at": iso(membership.created_at),
        "updated_at": iso(membership.updated_at),
    }


def retail_viewer(world) -> Membership:
    user = UserFactory(email="pat@retail.example.com")
    return Membership.objects.create(organization=world.tree["retail"], user=user, role="viewer")


def memberships_state(attempt) -> list[tuple[Any, ...]]:
    return list(Membership.objects.order_by("id").values_list("id", "user_id", "role"))


def session_client(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


# --- the matrix --------------------------------------------------------------------------------


def test_list_matrix(authz_world):
    def expect(attempt, response):
        assert response.json()["results"] == [membership_json(attempt.target)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="membership.view",
            allowed=VIEWERS,
            setup=retail_viewer,
            request=lambda a: Call(
                "get", URL, {"organization": str(a.target.organization_id), "role": "viewer"}
            ),
            expect=expect,
            listing=True,
        ),
    )


def test_retrieve_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == membership_json(attempt.target)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="membership.view",
            allowed=VIEWERS,
            setup=retail_viewer,
            request=lambda a: Call("get", f"{URL}{a.target.pk}/"),
            expect=expect,
        ),
    )


def test_create_matrix(authz_world):
    retail = authz_world.tree["retail"]

    def setup(world):
        return UserFactory(email="new.person@example.com")

    def expect(attempt, response):
        membership = Membership.objects.get(user=attempt.target)
        assert response.json() == membership_json(membership)
        assert (membership.organization_id, membership.role) == (retail.pk, "technician")
        audit = last_audit("membership.create")
        assert (audit.object_id, audit.actor_label, audit.changes) == (
            str(membership.pk),
            attempt.principal.label,
            {"user": [None, "new.person@example.com"], "role": [None, "technician"]},
        )

    assert_authz_matrix(
        authz_world,
        Case(
            permission="membership.add",
            allowed=MANAGERS,
            setup=setup,
            request=lambda a: Call(
                "post",
                URL,
                {
                    "organization": str(retail.pk),
                    "email": "New.Person@example.com",
                    "role": "technician",
                },
            ),
            status=201,
            state=memberships_state,
            expect=expect,
        ),
    )


def test_change_role_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == membership_json(attempt.target)
        assert attempt.target.role == "operator"
        assert last_audit("membership.update").changes == {"role": ["viewer", "operator"]}

    assert_authz_matrix(
        authz_world,
        Case(
            permission="membership.change",
            allowed=MANAGERS,
            setup=retail_viewer,
            request=lambda a: Call("patch", f"{URL}{a.target.pk}/", {"role": "operator"}),
            state=memberships_state,
            expect=expect,
        ),
    )


def test_delete_matrix(authz_world):
    def expect(attempt, response):
        assert response.content == b""
        assert not Membership.objects.filter(pk=attempt.target.pk).exists()
        assert last_audit("membership.delete").changes == {
            "user": ["pat@retail.example.com", None],
            "role": ["viewer", None],
        }

    assert_authz_matrix(
        authz_world,
        Case(
            permission="membership.delete",
            allowed=MANAGERS,
            setup=retail_viewer,
            request=lambda a: Call("delete", f"{URL}{a.target.pk}/"),
            status=204,
            state=memberships_state,
            expect=expect,
        ),
    )


# --- rules beyond the matrix -------------------------------------------------------------------


def test_it_refuses_to_grant_a_role_above_the_granters_own(tree):
    admin = make_member(tree["acme"], Role.ADMIN)
    UserFactory(email="climber@example.com")
    response = session_client(admin).post(
        URL,
        {"organization": str(tree["retail"].pk), "email": "climber@example.com", "role": "owner"},
        format="json",
    )
    assert response.status_code == 400
    assert error(response)["fields"] == {
        "role": ["You cannot grant a role with more rights than your own."]
    }
    assert not Membership.objects.filter(user__email="climber@example.com").exists()


def test_it_refuses_an_unknown_email_with_a_field_error(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    response = session_client(owner).post(
        URL,
        {"organization": str(tree["retail"].pk), "email": "ghost@example.com", "role": "viewer"},
        format="json",
    )
    assert response.status_code == 400
    assert error(response)["fields"] == {
        "email": ["No active user has this email address: send an invitation."]
    }


def test_it_keeps_the_last_owner(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    membership = Membership.objects.get(user=owner)
    client = session_client(owner)
    demoted = client.patch(f"{URL}{membership.pk}/", {"role": "viewer"}, format="json")
    deleted = client.delete(f"{URL}{membership.pk}/")
    assert (demoted.status_code, deleted.status_code) == (400, 400)
    assert error(deleted)["fields"] == {"role": ["An organization must keep at least one owner."]}
    assert Membership.objects.get(pk=membership.pk).role == "owner"


def test_it_answers_404_for_an_organization_of_a_sibling_in_the_body(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    UserFactory(email="x@example.com")
    response = session_client(owner).post(
        URL,
        {"organization": str(tree["globex"].pk), "email": "x@example.com", "role": "viewer"},
        format="json",
    )
    assert response.status_code == 404
    assert Membership.objects.filter(organization=tree["globex"]).count() == 0


def test_it_answers_404_for_a_malformed_id(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    client = session_client(owner)
    in_path = client.get(f"{URL}not-a-uuid/")
    in_body = client.post(
        URL, {"organization": "12", "email": owner.email, "role": "viewer"}, format="json"
    )
    assert (in_path.status_code, in_body.status_code) == (404, 404)


def test_it_filters_by_email_and_role(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    operator = make_member(tree["retail"], Role.OPERATOR, email="op@example.com")
    make_member(tree["retail"], Role.VIEWER)
    client = session_client(owner)
    by_email = client.get(URL, {"email": "OP@example.com"})
    by_role = client.get(URL, {"role": "operator"})
    expected = [str(Membership.objects.get(user=operator).pk)]
    assert (ids(by_email), ids(by_role)) == (expected, expected)


@pytest.mark.parametrize("rows", [3, 30])
def test_the_list_costs_a_constant_number_of_queries(tree, rows, django_assert_num_queries):
    owner = make_member(tree["acme"], Role.OWNER)
    for _ in range(rows):
        make_member(tree["retail"], Role.VIEWER)
    client = session_client(owner)
    # the session's user, the MFA middleware's check, the actor's memberships, the page
    with django_assert_num_queries(4):
        response = client.get(URL, {"page_size": 100})
    assert len(response.json()["results"]) == rows + 1
