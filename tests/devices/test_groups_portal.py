"""Portal group pages: anonymous -> login, sibling -> 404, role without the permission -> 403,
allowed -> the exact state."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.devices import groups
from apps.devices.choices import DeviceState, GroupKind
from apps.devices.models import Device, DeviceGroup, DeviceGroupUserObjectPermission
from tests.portal.conftest import verified_member

from .test_groups_support import make_device, make_group, make_version

pytestmark = pytest.mark.django_db
ACTIVE = {"state": ["active"]}


@pytest.fixture
def people(tree):
    acme = tree["acme"]
    return {
        "owner": verified_member(acme, Role.OWNER, "owner@acme.test"),
        "admin": verified_member(acme, Role.ADMIN, "admin@acme.test"),
        "viewer": verified_member(acme, Role.VIEWER, "viewer@acme.test"),
        "billing": verified_member(acme, Role.BILLING, "billing@acme.test"),
        "stranger": verified_member(tree["globex"], Role.OWNER, "owner@globex.test"),
    }


@pytest.fixture
def world(tree):
    version = make_version(tree["acme"])
    r1 = make_device(tree["retail"], version, "R-1", state=DeviceState.ACTIVE)
    make_device(tree["retail"], version, "R-2")
    lobby = make_group(tree["retail"], "Lobby", devices=[r1], description="screens")
    active = make_group(tree["acme"], "Active", kind=GroupKind.DYNAMIC, filter=ACTIVE)
    return {"version": version, "lobby": lobby, "active": active}


def list_url(organization) -> str:
    return reverse("groups:list", kwargs={"organization_id": organization.pk})


def detail_url(group) -> str:
    return reverse("groups:detail", kwargs={"group_id": group.pk})


def rows(response, attribute: str) -> list[str]:
    return re.findall(rf'data-{attribute}="([^"]+)"', response.content.decode())


def test_it_sends_an_anonymous_visitor_to_the_login_page(client, tree, world):
    for url in (list_url(tree["acme"]), detail_url(world["lobby"])):
        response = client.get(url)
        assert (response.status_code, response.url) == (302, f"/accounts/login/?next={url}")


def test_it_hides_a_sibling_organization_and_its_groups_with_404(client, tree, people, world):
    client.force_login(people["stranger"])
    assert client.get(list_url(tree["acme"])).status_code == 404
    assert client.get(detail_url(world["lobby"])).status_code == 404
    response = client.post(
        reverse("groups:add-devices", kwargs={"group_id": world["lobby"].pk}), {"serials": "R-2"}
    )
    assert response.status_code == 404
    assert list(world["lobby"].devices.values_list("serial", flat=True)) == ["R-1"]


def test_it_refuses_roles_without_the_permission_with_403(client, tree, people, world):
    client.force_login(people["billing"])
    assert client.get(list_url(tree["acme"])).status_code == 403
    client.force_login(people["viewer"])
    response = client.post(list_url(tree["acme"]), {"name": "Mine", "kind": "static"})
    assert response.status_code == 403
    response = client.post(
        reverse("groups:add-devices", kwargs={"group_id": world["lobby"].pk}), {"serials": "R-2"}
    )
    assert response.status_code == 403
    response = client.post(
        reverse("groups:share", kwargs={"group_id": world["lobby"].pk}),
        {"email": "owner@globex.test", "permission": "view"},
    )
    assert response.status_code == 403
    assert (DeviceGroup.objects.count(), DeviceGroupUserObjectPermission.objects.count()) == (2, 0)


def test_the_list_shows_the_groups_of_the_organization_subtree(client, tree, people, world):
    client.force_login(people["viewer"])
    response = client.get(list_url(tree["acme"]))
    assert response.status_code == 200
    assert rows(response, "group") == ["Active", "Lobby"]
    assert 'id="group-form"' not in response.content.decode()
    response = client.get(list_url(tree["retail"]))
    assert rows(response, "group") == ["Lobby"]


def test_the_filter_builder_stores_the_selection_json(client, tree, people, world):
    client.force_login(people["owner"])
    response = client.post(
        list_url(tree["acme"]),
        {
            "name": "EU active",
            "kind": "dynamic",
            "state": ["active", "maintenance"],
            "tags": "eu, lobby",
            "profile": str(world["version"].profile_id),
            "firmware": "1.2.0 1.3.0",
            "search": " SN-0 ",
        },
    )
    group = DeviceGroup.objects.get(name="EU active")
    assert (response.status_code, response.url) == (302, detail_url(group))
    assert (group.organization_id, group.kind, group.filter) == (
        tree["acme"].pk,
        "dynamic",
        {
            "state": ["active", "maintenance"],
            "tags_all": ["eu", "lobby"],
            "profile": [str(world["version"].profile_id)],
            "firmware": ["1.2.0", "1.3.0"],
            "search": "SN-0",
        },
    )


def test_a_static_group_ignores_the_filter_fields(client, tree, people, world):
    client.force_login(people["owner"])
    client.post(list_url(tree["acme"]), {"name": "Pinned", "kind": "static", "state": ["active"]})
    assert DeviceGroup.objects.get(name="Pinned").filter == {}


def test_a_duplicate_name_is_shown_on_the_form(client, tree, people, world):
    client.force_login(people["owner"])
    response = client.post(list_url(tree["retail"]), {"name": "Lobby", "kind": "static"})
    assert response.status_code == 400
    assert "A group with this name already exists here." in response.content.decode()
    assert DeviceGroup.objects.count() == 2


def test_the_detail_pages_members_with_a_cursor(client, tree, people, world):
    version = world["version"]
    Device.objects.bulk_create(
        [
            Device(
                organization=tree["store"],
                manufacturer=tree["acme"],
                profile_version=version,
                serial=f"P-{index:03}",
                state=DeviceState.ACTIVE,
            )
            for index in range(52)
        ]
    )
    client.force_login(people["viewer"])
    first = client.get(detail_url(world["active"]))
    active = Device.objects.filter(state=DeviceState.ACTIVE).order_by("-id")
    expected = list(active.values_list("serial", flat=True))
    assert rows(first, "serial") == expected[:50]
    next_after = re.search(r'id="members-next" href="\?after=([^"]+)"', first.content.decode())
    assert next_after is not None
    second = client.get(detail_url(world["active"]), {"after": next_after.group(1)})
    assert rows(second, "serial") == expected[50:]
    assert 'id="members-next"' not in second.content.decode()


def test_adding_devices_by_serial_reports_unknown_ones(client, tree, people, world):
    client.force_login(people["admin"])
    response = client.post(
        reverse("groups:add-devices", kwargs={"group_id": world["lobby"].pk}),
        {"serials": "R-2\nR-1, X-9"},
        follow=True,
    )
    assert response.status_code == 200
    assert sorted(world["lobby"].devices.values_list("serial", flat=True)) == ["R-1", "R-2"]
    page = response.content.decode()
    assert "1 device(s) added to Lobby." in page
    assert "Not found here: X-9." in page


def test_sharing_with_a_user_lets_them_open_the_group_read_only(client, tree, people, world):
    client.force_login(people["owner"])
    response = client.post(
        reverse("groups:share", kwargs={"group_id": world["lobby"].pk}),
        {"email": "OWNER@globex.test", "permission": "view"},
    )
    assert response.status_code == 302
    assert rows(client.get(detail_url(world["lobby"])), "share") == ["owner@globex.test"]
    client.force_login(people["stranger"])
    page = client.get(detail_url(world["lobby"]))
    assert page.status_code == 200
    assert rows(page, "serial") == ["R-1"]
    assert 'id="add-devices-form"' not in page.content.decode()
    shared = client.get(list_url(tree["globex"]))
    assert rows(shared, "group") == ["Lobby"]
    assert client.get(detail_url(world["active"])).status_code == 404


def test_withdrawing_a_share_hides_the_group_again(client, tree, people, world):
    groups.group_share(actor=SYSTEM, group=world["lobby"], organization=tree["globex"])
    client.force_login(people["owner"])
    response = client.post(
        reverse("groups:unshare", kwargs={"group_id": world["lobby"].pk}),
        {"organization": str(tree["globex"].pk)},
    )
    assert response.status_code == 302
    client.force_login(people["stranger"])
    assert client.get(detail_url(world["lobby"])).status_code == 404


def test_the_groups_page_is_in_the_side_navigation(client, tree, people, world):
    client.force_login(people["viewer"])
    page = client.get(list_url(tree["acme"])).content.decode()
    assert page.count(f'href="{list_url(tree["acme"])}"') == 1
    client.force_login(people["billing"])
    dashboard = reverse("portal:dashboard", kwargs={"organization_id": tree["acme"].pk})
    assert list_url(tree["acme"]) not in client.get(dashboard).content.decode()
