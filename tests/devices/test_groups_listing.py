"""``group_list`` words the grant branches as ``id = ANY(ARRAY(...))`` (see
``apps.core.scoping.GrantedIds``) so PostgreSQL can use its indexes; it returns exactly what the
plain ``for_actor`` query returns: same rows, same order, for every ordering, slice and filter."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from guardian.shortcuts import assign_perm

from apps.accounts.roles import Role
from apps.core.scoping import organization_ids_under
from apps.devices import groups
from apps.devices.choices import GroupKind
from apps.devices.models import (
    DeviceGroup,
    DeviceGroupGroupObjectPermission,
    DeviceGroupUserObjectPermission,
)
from tests.factories import actor, make_member

from .test_groups_support import make_group

pytestmark = pytest.mark.django_db

ORDERINGS = [("name", "id"), ("-created_at", "-id"), ("name",), ("-name", "organization")]
SLICES = [(0, 3), (2, 7), (5, 6), (0, 50), (9, 12), (20, 30)]


@pytest.fixture
def mixed(tree):
    """A retail owner who sees groups through the role (retail, store), through grants to the
    user (acme, globex, hospital, and one of retail's own), and through a grant to retail."""
    owner = make_member(tree["retail"], Role.OWNER)
    other = make_member(tree["acme"], Role.OWNER)
    made = {}
    for org, name, kind in [
        ("retail", "alpha", GroupKind.STATIC),
        ("retail", "beta", GroupKind.DYNAMIC),
        ("retail", "kappa", GroupKind.STATIC),
        ("store", "alpha", GroupKind.STATIC),
        ("store", "gamma", GroupKind.DYNAMIC),
        ("acme", "alpha", GroupKind.STATIC),
        ("acme", "beta", GroupKind.STATIC),
        ("acme", "zeta", GroupKind.DYNAMIC),
        ("acme", "omega", GroupKind.STATIC),
        ("globex", "alpha", GroupKind.DYNAMIC),
        ("globex", "mu", GroupKind.STATIC),
        ("hospital", "beta", GroupKind.STATIC),
        ("hospital", "delta", GroupKind.STATIC),
    ]:
        made[f"{org}/{name}"] = make_group(tree[org], name, kind=kind)
    retail_group = groups.organization_auth_group(tree["retail"])
    for key in ["acme/alpha", "acme/beta", "globex/alpha", "hospital/beta", "retail/kappa"]:
        assign_perm("view_devicegroup", owner, made[key])
    for key in ["acme/zeta", "hospital/beta"]:
        assign_perm("view_devicegroup", retail_group, made[key])
    assign_perm("view_devicegroup", other, made["acme/omega"])  # someone else's grant
    return {"owner": actor(owner), "user": owner, "groups": made, "tree": tree}


def plain(who) -> list[DeviceGroup]:
    """The reference wording of the same scope: ``IN (subquery)`` for every branch."""
    paths = who.paths_for("devicegroup.view")
    user_grants = DeviceGroupUserObjectPermission.objects.filter(
        user_id=who.user_id, permission__codename="view_devicegroup"
    )
    org_grants = DeviceGroupGroupObjectPermission.objects.filter(
        group__organization__in=organization_ids_under(paths),
        permission__codename="view_devicegroup",
    )
    return DeviceGroup.objects.filter(
        Q(organization__in=organization_ids_under(paths))
        | Q(pk__in=user_grants.values("content_object_id"))
        | Q(pk__in=org_grants.values("content_object_id"))
    )


def labels(rows) -> list[str]:
    return [f"{group.organization.name}/{group.name}" for group in rows]


def test_the_scope_of_the_mixed_set_is_the_expected_one(mixed):
    listed = groups.group_list(actor=mixed["owner"]).order_by("name", "id")
    assert sorted(labels(listed)) == [
        "Acme/alpha",
        "Acme/beta",
        "Acme/zeta",
        "Globex/alpha",
        "Hospital/beta",
        "Retail Co/alpha",
        "Retail Co/beta",
        "Retail Co/kappa",
        "Store 1/alpha",
        "Store 1/gamma",
    ]
    assert labels(listed.order_by("-created_at", "-id")[:4]) == [
        "Hospital/beta",
        "Globex/alpha",
        "Acme/zeta",
        "Acme/beta",
    ]


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_every_page_is_the_plain_querys_page(mixed, ordering):
    who = mixed["owner"]
    listed = groups.group_list(actor=who).order_by(*ordering)
    expected = list(plain(who).order_by(*ordering).values_list("pk", flat=True))
    assert len(expected) == 10
    if ordering != ("name",):  # "name" alone leaves ties (alpha x4) to the database
        assert [group.pk for group in listed] == expected
    else:
        assert sorted(group.pk for group in listed) == sorted(expected)
        assert [g.name for g in listed] == sorted(g.name for g in listed)
    if ordering == ("name",):
        return
    for low, high in SLICES:
        assert [group.pk for group in listed[low:high]] == expected[low:high], (low, high)


@pytest.mark.parametrize(
    "narrowing",
    [
        {"kind": GroupKind.STATIC},
        {"kind": GroupKind.DYNAMIC},
        {"organization": "acme"},
        {"organization": "retail"},
        {"name__startswith": "a"},
    ],
)
def test_filters_before_the_page_are_kept(mixed, narrowing):
    who, tree = mixed["owner"], mixed["tree"]
    if "organization" in narrowing:
        narrowing = {"organization": tree[narrowing["organization"]]}
    listed = groups.group_list(actor=who).filter(**narrowing).order_by("name", "id")
    expected = list(plain(who).filter(**narrowing).order_by("name", "id"))
    assert [g.pk for g in listed] == [g.pk for g in expected]
    assert [g.pk for g in listed[1:3]] == [g.pk for g in expected[1:3]]


def test_a_group_seen_through_the_role_and_a_grant_is_listed_once(mixed):
    listed = groups.group_list(actor=mixed["owner"]).filter(name="kappa").order_by("name", "id")
    assert labels(listed) == ["Retail Co/kappa"]


def test_a_page_is_one_query_with_indexable_grant_branches(mixed):
    listed = groups.group_list(actor=mixed["owner"]).order_by("name", "id")[:3]
    with CaptureQueriesContext(connection) as queries:
        assert labels(listed) == ["Retail Co/alpha", "Store 1/alpha", "Acme/alpha"]
    assert len(queries) == 1
    sql = queries[0]["sql"]
    assert sql.count('"devices_devicegroup"."id" = ANY(ARRAY(SELECT') == 2  # user | organization
    assert '"devices_devicegroup"."id" IN (SELECT' not in sql


def test_lookups_see_the_same_groups(mixed):
    who, made = mixed["owner"], mixed["groups"]
    visible = groups.group_list(actor=who)
    assert visible.get(pk=made["acme/zeta"].pk).name == "zeta"
    assert visible.filter(pk=made["retail/kappa"].pk).exists()
    assert not visible.filter(pk=made["acme/omega"].pk).exists()
    assert not visible.filter(pk=made["globex/mu"].pk).exists()
    assert visible.count() == 10
    change = groups.group_list(actor=who, action="change")
    assert sorted(labels(change)) == [
        "Retail Co/alpha",
        "Retail Co/beta",
        "Retail Co/kappa",
        "Store 1/alpha",
        "Store 1/gamma",
    ]


def test_platform_staff_see_every_group(tree):
    staff = actor(make_member(tree["platform"], Role.OWNER))
    make_group(tree["acme"], "one")
    make_group(tree["globex"], "two")
    listed = groups.group_list(actor=staff).order_by("name", "id")
    assert labels(listed[:5]) == ["Acme/one", "Globex/two"]


def test_the_api_pages_through_the_same_groups_in_the_same_order(client, mixed):
    who = mixed["owner"]
    client.force_login(mixed["user"])
    found, url = [], "/api/v1/groups/?page_size=3"
    while url:
        body = client.get(url).json()
        found += [row["id"] for row in body["results"]]
        url = body["next"]
    expected = plain(who).order_by("-created_at", "-id").values_list("pk", flat=True)
    assert found == [str(pk) for pk in expected]
    body = client.get("/api/v1/groups/?kind=dynamic").json()
    assert [row["name"] for row in body["results"]] == ["alpha", "zeta", "gamma", "beta"]


def test_the_portal_lists_the_same_groups(client, mixed):
    """The portal orders by name alone: equal names (alpha) may come in either order."""
    tree = mixed["tree"]
    client.force_login(mixed["user"])
    response = client.get(f"/o/{tree['retail'].pk}/groups/")
    assert response.status_code == 200
    own, shared = response.context["groups"], response.context["shared_groups"]
    assert [g.name for g in own] == ["alpha", "alpha", "beta", "gamma", "kappa"]
    assert sorted(labels(own)) == [
        "Retail Co/alpha",
        "Retail Co/beta",
        "Retail Co/kappa",
        "Store 1/alpha",
        "Store 1/gamma",
    ]
    assert [g.name for g in shared] == ["alpha", "alpha", "beta", "beta", "zeta"]
    assert sorted(labels(shared)) == [
        "Acme/alpha",
        "Acme/beta",
        "Acme/zeta",
        "Globex/alpha",
        "Hospital/beta",
    ]
