from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import Membership, Organization
from apps.accounts.roles import Role
from tests.authz import Call, Case, assert_authz_matrix, error, ids, iso, last_audit
from tests.factories import UserFactory, make_member, make_organization

pytestmark = pytest.mark.django_db

URL = "/api/v1/organizations/"
EVERY_ROLE = set(Role.values)
MANAGERS = {Role.OWNER, Role.ADMIN}


def organization_json(organization: Organization) -> dict[str, Any]:
    organization.refresh_from_db()
    return {
        "id": str(organization.pk),
        "name": organization.name,
        "slug": organization.slug,
        "kind": organization.kind,
        "parent": str(organization.parent_id) if organization.parent_id else None,
        "depth": organization.depth,
        "require_mfa": organization.require_mfa,
        "is_active": organization.is_active,
        "created_at": iso(organization.created_at),
    }


def organization_state(organization: Organization) -> tuple[Any, ...]:
    organization.refresh_from_db()
    return (
        Organization.objects.count(),
        organization.name,
        organization.parent_id,
        organization.path,
        organization.is_active,
    )


def session_client(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


# --- the matrix --------------------------------------------------------------------------------


def test_list_matrix(authz_world):
    tree = authz_world.tree

    def expect(attempt, response):
        assert ids(response) == [str(tree["hospital"].pk), str(tree["retail"].pk)]
        assert response.json()["results"][1] == organization_json(tree["retail"])

    assert_authz_matrix(
        authz_world,
        Case(
            permission="organization.view",
            allowed=EVERY_ROLE,
            request=lambda a: Call("get", URL, {"parent": str(tree["acme"].pk)}),
            expect=expect,
            listing=True,
        ),
    )


def test_retrieve_matrix(authz_world):
    retail = authz_world.tree["retail"]

    def expect(attempt, response):
        assert response.json() == organization_json(retail)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="organization.view",
            allowed=EVERY_ROLE,
            request=lambda a: Call("get", f"{URL}{retail.pk}/"),
            expect=expect,
        ),
    )


def test_create_matrix(authz_world):
    retail = authz_world.tree["retail"]

    def expect(attempt, response):
        created = Organization.objects.get(slug="store-2")
        assert response.json() == organization_json(created)
        assert (created.name, created.kind, created.parent_id, created.depth) == (
            "Store 2",
            Organization.Kind.SITE,
            retail.pk,
            3,
        )
        assert created.path == retail.path + created.pk.hex + "/"
        audit = last_audit("organization.create")
        assert (audit.object_id, audit.actor_label, audit.actor_kind) == (
            str(created.pk),
            attempt.principal.label,
            attempt.principal.actor_kind,
        )

    assert_authz_matrix(
        authz_world,
        Case(
            permission="organization.add",
            allowed=MANAGERS,
            request=lambda a: Call(
                "post", URL, {"name": "Store 2", "parent": str(retail.pk), "kind": "site"}
            ),
            status=201,
            state=lambda a: Organization.objects.count(),
            expect=expect,
        ),
    )


def test_update_matrix(authz_world):
    retail = authz_world.tree["retail"]

    def expect(attempt, response):
        assert response.json() == organization_json(retail)
        assert (retail.name, retail.require_mfa) == ("Retail Group", True)
        assert last_audit("organization.update").changes == {
            "name": ["Retail Co", "Retail Group"],
            "require_mfa": [False, True],
        }

    assert_authz_matrix(
        authz_world,
        Case(
            permission="organization.change",
            allowed=MANAGERS,
            request=lambda a: Call(
                "patch", f"{URL}{retail.pk}/", {"name": "Retail Group", "require_mfa": True}
            ),
            state=lambda a: organization_state(retail),
            expect=expect,
        ),
    )


def test_deactivate_matrix_needs_organization_delete(authz_world):
    retail = authz_world.tree["retail"]

    def expect(attempt, response):
        assert response.json() == organization_json(retail)
        assert retail.is_active is False
        assert last_audit("organization.update").changes == {"is_active": [True, False]}

    assert_authz_matrix(
        authz_world,
        Case(
            permission="organization.change",
            allowed={Role.OWNER},
            request=lambda a: Call("patch", f"{URL}{retail.pk}/", {"is_active": False}),
            state=lambda a: organization_state(retail),
            expect=expect,
        ),
    )


def test_move_matrix(authz_world):
    tree = authz_world.tree
    hospital, retail = tree["hospital"], tree["retail"]

    def expect(attempt, response):
        assert response.json() == organization_json(hospital)
        assert (hospital.parent_id, hospital.depth) == (retail.pk, 3)
        assert hospital.path == retail.path + hospital.pk.hex + "/"
        assert last_audit("organization.move").changes["parent"] == [
            str(tree["acme"].pk),
            str(retail.pk),
        ]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="organization.move",
            allowed=MANAGERS,
            request=lambda a: Call("post", f"{URL}{hospital.pk}/move/", {"parent": str(retail.pk)}),
            state=lambda a: organization_state(hospital),
            expect=expect,
        ),
    )


# --- rules beyond the matrix -------------------------------------------------------------------


def test_it_lets_platform_staff_create_a_top_level_organization(db):
    staff = UserFactory(is_superuser=True, is_staff=True)
    response = session_client(staff).post(URL, {"name": "Initech", "kind": "manufacturer"})
    created = Organization.objects.get(name="Initech")
    assert response.status_code == 201
    assert response.json() == organization_json(created)
    assert (created.parent_id, created.depth, created.slug) == (None, 0, "initech")


def test_it_refuses_a_top_level_organization_to_an_owner(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    response = session_client(owner).post(URL, {"name": "Initech"})
    assert response.status_code == 403
    assert error(response)["message"] == "Only platform staff may create a top-level organization."
    assert not Organization.objects.filter(name="Initech").exists()


def test_it_answers_404_for_a_parent_in_a_sibling_organization(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    response = session_client(owner).post(URL, {"name": "Sneaky", "parent": str(tree["globex"].pk)})
    assert response.status_code == 404
    assert not Organization.objects.filter(name="Sneaky").exists()


def test_it_answers_404_for_a_malformed_parent_id(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    response = session_client(owner).post(URL, {"name": "Sneaky", "parent": "not-a-uuid"})
    assert response.status_code == 404
    assert error(response)["code"] == "not_found"


def test_it_answers_403_for_a_visible_parent_without_the_add_permission(tree):
    user = make_member(tree["globex"], Role.ADMIN)  # may add organizations somewhere
    Membership.objects.create(organization=tree["acme"], user=user, role=Role.VIEWER)
    response = session_client(user).post(URL, {"name": "Nope", "parent": str(tree["acme"].pk)})
    assert response.status_code == 403
    assert not Organization.objects.filter(name="Nope").exists()


def test_it_refuses_a_blank_name_with_a_field_error(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    response = session_client(owner).post(
        URL, {"name": "", "parent": str(tree["acme"].pk)}, format="json"
    )
    assert response.status_code == 400
    assert error(response)["fields"] == {"name": ["This field may not be blank."]}


def test_it_refuses_a_duplicate_slug_with_a_field_error(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    response = session_client(owner).post(
        URL, {"name": "Other", "slug": tree["retail"].slug, "parent": str(tree["acme"].pk)}
    )
    assert response.status_code == 400
    assert error(response)["fields"] == {"slug": ["An organization with this slug already exists."]}
    assert Organization.objects.count() == 6


def test_it_refuses_to_move_an_organization_below_itself(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    before = Organization.objects.get(pk=tree["retail"].pk).path
    response = session_client(owner).post(
        f"{URL}{tree['retail'].pk}/move/", {"parent": str(tree["store"].pk)}
    )
    assert response.status_code == 400
    assert error(response)["fields"] == {"parent": ["An organization cannot move below itself."]}
    assert Organization.objects.get(pk=tree["retail"].pk).path == before


def test_it_refuses_to_move_to_a_parent_outside_the_scope(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    response = session_client(owner).post(
        f"{URL}{tree['retail'].pk}/move/", {"parent": str(tree["globex"].pk)}
    )
    assert response.status_code == 404
    assert Organization.objects.get(pk=tree["retail"].pk).parent_id == tree["acme"].pk


def test_it_has_no_hard_delete_and_no_put(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    client = session_client(owner)
    deleted = client.delete(f"{URL}{tree['retail'].pk}/")
    put = client.put(f"{URL}{tree['retail'].pk}/", {"name": "X"}, format="json")
    assert (deleted.status_code, put.status_code) == (405, 405)
    assert error(deleted) == {
        "status": 405,
        "code": "method_not_allowed",
        "message": 'Method "DELETE" not allowed.',
        "request_id": deleted["X-Request-ID"],
    }
    assert Organization.objects.filter(pk=tree["retail"].pk).exists()


@pytest.mark.parametrize("rows", [3, 30])
def test_the_list_costs_a_constant_number_of_queries(tree, rows, django_assert_num_queries):
    owner = make_member(tree["acme"], Role.OWNER)
    for number in range(rows):
        make_organization(f"Site {number}", tree["hospital"], Organization.Kind.SITE)
    client = session_client(owner)
    # the session's user, the MFA middleware's check, the actor's memberships, the page
    with django_assert_num_queries(4):
        response = client.get(URL, {"page_size": 100})
    assert len(response.json()["results"]) == rows + 4
