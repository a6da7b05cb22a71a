"""/api/v1/groups/: the authorization matrix on every endpoint, guardian grants, query budgets."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.devices import groups
from apps.devices.choices import DeviceState, GroupKind
from apps.devices.models import (
    Device,
    DeviceGroup,
    DeviceGroupGroupObjectPermission,
    DeviceGroupUserObjectPermission,
    GroupMembership,
)
from tests.authz import Call, Case, assert_authz_matrix, authz_world, error, ids, iso, last_audit
from tests.factories import make_member

from .test_groups_support import make_device, make_group, make_version

__all__ = ["authz_world"]

pytestmark = pytest.mark.django_db

URL = "/api/v1/groups/"
VIEWERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.APPROVER, Role.TECHNICIAN, Role.VIEWER}
EDITORS = {Role.OWNER, Role.ADMIN, Role.OPERATOR}
SHARERS = {Role.OWNER, Role.ADMIN}


def group_json(group: DeviceGroup) -> dict[str, Any]:
    group.refresh_from_db()
    return {
        "id": str(group.pk),
        "organization": str(group.organization_id),
        "name": group.name,
        "description": group.description,
        "kind": group.kind,
        "filter": group.filter,
        "created_at": iso(group.created_at),
        "updated_at": iso(group.updated_at),
    }


def device_json(device) -> dict[str, Any]:
    return {
        "id": str(device.pk),
        "organization": str(device.organization_id),
        "serial": device.serial,
        "name": device.name,
        "state": device.state,
        "connectivity": device.connectivity,
        "firmware_version": device.firmware_version,
        "tags": device.tags,
        "last_seen_at": None,
    }


def retail_group(world) -> DeviceGroup:
    version = make_version(world.tree["acme"])
    devices = [
        make_device(world.tree["retail"], version, "R-1", state=DeviceState.ACTIVE),
        make_device(world.tree["store"], version, "S-1"),
    ]
    make_device(world.tree["retail"], version, "R-2")
    return make_group(world.tree["retail"], "Lobby", devices=devices, description="screens")


def groups_state(attempt) -> list[tuple[Any, ...]]:
    return list(DeviceGroup.objects.order_by("id").values_list("id", "name", "filter"))


def members_state(attempt) -> list[tuple[Any, ...]]:
    return sorted(GroupMembership.objects.values_list("group_id", "device__serial"))


def shares_state(attempt) -> tuple[list[Any], list[Any]]:
    return (
        sorted(DeviceGroupUserObjectPermission.objects.values_list("user_id", "permission_id")),
        sorted(DeviceGroupGroupObjectPermission.objects.values_list("group_id", "permission_id")),
    )


# --- the matrix --------------------------------------------------------------------------------


def test_list_matrix(authz_world):
    def expect(attempt, response):
        assert response.json()["results"] == [group_json(attempt.target)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="devicegroup.view",
            allowed=VIEWERS,
            setup=retail_group,
            request=lambda a: Call("get", URL, {"organization": str(a.target.organization_id)}),
            expect=expect,
            listing=True,
        ),
    )


def test_retrieve_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == group_json(attempt.target)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="devicegroup.view",
            allowed=VIEWERS,
            setup=retail_group,
            request=lambda a: Call("get", f"{URL}{a.target.pk}/"),
            expect=expect,
        ),
    )


def test_members_matrix(authz_world):
    def expect(attempt, response):
        devices = attempt.target.devices.order_by("-id")
        assert response.json() == {
            "next": None,
            "previous": None,
            "results": [device_json(device) for device in devices],
        }
        assert sorted(row["serial"] for row in response.json()["results"]) == ["R-1", "S-1"]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="devicegroup.view",
            allowed=VIEWERS,
            setup=retail_group,
            request=lambda a: Call("get", f"{URL}{a.target.pk}/devices/"),
            expect=expect,
        ),
    )


def test_create_matrix(authz_world):
    retail = authz_world.tree["retail"]

    def expect(attempt, response):
        group = DeviceGroup.objects.get(name="Active")
        assert response.json() == group_json(group)
        assert (group.organization_id, group.kind, group.filter) == (
            retail.pk,
            "dynamic",
            {"state": ["active"]},
        )
        audit = last_audit("devicegroup.create")
        assert (audit.object_id, audit.actor_label) == (str(group.pk), attempt.principal.label)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="devicegroup.add",
            allowed=EDITORS,
            request=lambda a: Call(
                "post",
                URL,
                {
                    "organization": str(retail.pk),
                    "name": "Active",
                    "kind": "dynamic",
                    "filter": {"state": ["active"]},
                },
            ),
            status=201,
            state=groups_state,
            expect=expect,
        ),
    )


def test_update_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == group_json(attempt.target)
        assert (attempt.target.name, attempt.target.description) == ("Lobby screens", "")
        assert last_audit("devicegroup.update").changes == {
            "name": ["Lobby", "Lobby screens"],
            "description": ["screens", ""],
        }

    assert_authz_matrix(
        authz_world,
        Case(
            permission="devicegroup.change",
            allowed=EDITORS,
            setup=retail_group,
            request=lambda a: Call(
                "patch", f"{URL}{a.target.pk}/", {"name": "Lobby screens", "description": ""}
            ),
            state=groups_state,
            expect=expect,
        ),
    )


def test_delete_matrix(authz_world):
    def expect(attempt, response):
        assert DeviceGroup.objects.filter(pk=attempt.target.pk).exists() is False
        assert GroupMembership.objects.count() == 0

    assert_authz_matrix(
        authz_world,
        Case(
            permission="devicegroup.delete",
            allowed=EDITORS,
            setup=retail_group,
            request=lambda a: Call("delete", f"{URL}{a.target.pk}/"),
            status=204,
            state=groups_state,
            expect=expect,
        ),
    )


def test_add_devices_matrix(authz_world):
    def request(attempt):
        return Call(
            "post", f"{URL}{attempt.target.pk}/add-devices/", {"devices": make_device_ids()}
        )

    def expect(attempt, response):
        assert response.json() == {"added": 1, "rejected": [UNKNOWN]}
        serials = sorted(attempt.target.devices.values_list("serial", flat=True))
        assert serials == ["R-1", "R-2", "S-1"]
        assert last_audit("devicegroup.add_devices").changes == {
            "devices": [None, [make_device_ids()[0]]]
        }

    assert_authz_matrix(
        authz_world,
        Case(
            permission="devicegroup.change",
            allowed=EDITORS,
            setup=retail_group,
            request=request,
            state=members_state,
            expect=expect,
        ),
    )


UNKNOWN = "00000000-0000-7000-8000-000000000000"


def make_device_ids() -> list[str]:
    r2 = Device.objects.get(serial="R-2")
    r1 = Device.objects.get(serial="R-1")
    return [str(r2.pk), str(r1.pk), UNKNOWN]


def test_remove_devices_matrix(authz_world):
    def request(attempt):
        return Call(
            "post", f"{URL}{attempt.target.pk}/remove-devices/", {"devices": make_device_ids()}
        )

    def expect(attempt, response):
        rejected = sorted([UNKNOWN, make_device_ids()[0]])
        assert response.json() == {"removed": 1, "rejected": rejected}
        assert list(attempt.target.devices.values_list("serial", flat=True)) == ["S-1"]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="devicegroup.change",
            allowed=EDITORS,
            setup=retail_group,
            request=request,
            state=members_state,
            expect=expect,
        ),
    )


def test_share_matrix(authz_world):
    def setup(world):
        return retail_group(world), make_member(world.tree["globex"], Role.VIEWER)

    def expect(attempt, response):
        group, contractor = attempt.target
        assert response.json() == [
            {
                "user": {"id": str(contractor.pk), "email": contractor.email},
                "organization": None,
                "permissions": ["view"],
            }
        ]
        assert list(
            DeviceGroupUserObjectPermission.objects.values_list("user_id", "content_object_id")
        ) == [(contractor.pk, group.pk)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="devicegroup.share",
            allowed=SHARERS,
            setup=setup,
            request=lambda a: Call(
                "post", f"{URL}{a.target[0].pk}/share/", {"user": a.target[1].email.upper()}
            ),
            state=shares_state,
            expect=expect,
        ),
    )


def _shared_with_hospital(world) -> DeviceGroup:
    group = retail_group(world)
    groups.group_share(
        actor=SYSTEM, group=group, organization=world.tree["hospital"], permission="change"
    )
    return group


def test_unshare_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == {"removed": 2}
        assert DeviceGroupGroupObjectPermission.objects.count() == 0

    assert_authz_matrix(
        authz_world,
        Case(
            permission="devicegroup.share",
            allowed=SHARERS,
            setup=_shared_with_hospital,
            request=lambda a: Call(
                "post",
                f"{URL}{a.target.pk}/unshare/",
                {"organization": str(a.world.tree["hospital"].pk)},
            ),
            state=shares_state,
            expect=expect,
        ),
    )


def test_shares_matrix(authz_world):
    def expect(attempt, response):
        hospital = attempt.world.tree["hospital"]
        assert response.json() == [
            {
                "user": None,
                "organization": {"id": str(hospital.pk), "name": "Hospital"},
                "permissions": ["change", "view"],
            }
        ]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="devicegroup.share",
            allowed=SHARERS,
            setup=_shared_with_hospital,
            request=lambda a: Call("get", f"{URL}{a.target.pk}/shares/"),
            expect=expect,
        ),
    )


# --- guardian grants ---------------------------------------------------------------------------


def session(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def shared(tree):
    version = make_version(tree["acme"])
    r1 = make_device(tree["retail"], version, "R-1")
    other = make_group(tree["retail"], "Other", devices=[r1])
    group = make_group(tree["retail"], "Shared", devices=[r1])
    contractor = make_member(tree["globex"], Role.VIEWER)
    groups.group_share(actor=SYSTEM, group=group, user=contractor)
    return {"group": group, "other": other, "device": r1, "client": session(contractor)}


@pytest.mark.parametrize("role", [Role.VIEWER, Role.BILLING])
def test_a_user_of_another_organization_with_a_grant_sees_exactly_that_group(tree, shared, role):
    contractor = make_member(tree["globex"], role)
    groups.group_share(actor=SYSTEM, group=shared["group"], user=contractor)
    client = session(contractor)
    assert ids(client.get(URL)) == [str(shared["group"].pk)]
    assert client.get(f"{URL}{shared['group'].pk}/").json() == group_json(shared["group"])
    assert client.get(f"{URL}{shared['other'].pk}/").status_code == 404
    members = client.get(f"{URL}{shared['group'].pk}/devices/")
    assert members.json()["results"] == [device_json(shared["device"])]
    assert client.get(f"{URL}{shared['other'].pk}/devices/").status_code == 404


def test_a_view_grant_does_not_allow_changes(shared):
    client = shared["client"]
    group = shared["group"]
    response = client.patch(f"{URL}{group.pk}/", {"name": "Mine"}, format="json")
    assert (response.status_code, error(response)["status"]) == (403, 403)
    response = client.post(
        f"{URL}{group.pk}/add-devices/", {"devices": [str(shared["device"].pk)]}, format="json"
    )
    assert response.status_code == 403
    assert client.delete(f"{URL}{group.pk}/").status_code == 403
    assert (
        client.post(f"{URL}{group.pk}/share/", {"user": "x@y.z"}, format="json").status_code == 403
    )
    group.refresh_from_db()
    assert group.name == "Shared"


def test_a_change_grant_allows_renaming(tree, shared):
    contractor = make_member(tree["globex"], Role.VIEWER)
    groups.group_share(actor=SYSTEM, group=shared["group"], user=contractor, permission="change")
    response = session(contractor).patch(
        f"{URL}{shared['group'].pk}/", {"name": "Renamed"}, format="json"
    )
    assert (response.status_code, response.json()["name"]) == (200, "Renamed")


def test_an_organization_grant_shows_the_group_to_that_organizations_viewers(tree, shared):
    groups.group_share(actor=SYSTEM, group=shared["other"], organization=tree["globex"])
    client = session(make_member(tree["globex"], Role.TECHNICIAN))
    assert ids(client.get(URL)) == [str(shared["other"].pk)]


# --- bad input ---------------------------------------------------------------------------------


def test_a_bad_filter_is_a_400_naming_the_key(tree):
    client = session(make_member(tree["acme"], Role.OPERATOR))
    response = client.post(
        URL,
        {
            "organization": str(tree["acme"].pk),
            "name": "X",
            "kind": "dynamic",
            "filter": {"state": ["nope"]},
        },
        format="json",
    )
    assert response.status_code == 400
    assert error(response)["fields"] == {"filter.state": ["Unknown value(s): nope."]}


def test_sharing_needs_exactly_one_target_and_a_known_user(tree):
    group = make_group(tree["acme"], "G")
    client = session(make_member(tree["acme"], Role.ADMIN))
    response = client.post(f"{URL}{group.pk}/share/", {}, format="json")
    assert error(response)["fields"] == {
        "non_field_errors": ["Give either a user (email) or an organization."]
    }
    response = client.post(f"{URL}{group.pk}/share/", {"user": "ghost@example.com"}, format="json")
    assert error(response)["fields"] == {"user": ["No active user has this email."]}


# --- query budgets -----------------------------------------------------------------------------


def _count(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_list_and_member_queries_do_not_grow_with_rows(tree):
    version = make_version(tree["acme"])
    client = session(make_member(tree["acme"], Role.VIEWER))
    group = make_group(tree["acme"], "G0", devices=[make_device(tree["acme"], version, "D-0")])
    members_url = f"{URL}{group.pk}/devices/"
    small = (_count(client, URL), _count(client, members_url))
    for index in range(1, 20):
        make_group(tree["retail"], f"G{index}", kind=GroupKind.DYNAMIC, filter={})
        device = make_device(tree["retail"], version, f"D-{index}")
        GroupMembership.objects.create(group=group, device=device)
    assert (_count(client, URL), _count(client, members_url)) == small
    assert small == (4, 5)
