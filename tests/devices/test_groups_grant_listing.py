"""A page of device groups takes only its first grants (``apps.core.scoping.GrantedIds``): every
grant row carries its group's name (``object_name``, set by triggers, migration
``0003_group_grant_listing``), so ``for_actor(...).order_by("name", "id")[:n]`` reads the first
``n`` grants from an index instead of every shared group. The pages must be exactly the pages
of the whole scope, and anything else than a plain page must keep every grant."""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from django.contrib.auth.models import Permission
from django.db import connection, transaction
from django.db.models import Count, Q, Window
from django.test.utils import CaptureQueriesContext
from guardian.shortcuts import assign_perm

from apps.accounts.roles import Role
from apps.core.scoping import organization_ids_under
from apps.devices import groups
from apps.devices.models import (
    DeviceGroup,
    DeviceGroupGroupObjectPermission,
    DeviceGroupUserObjectPermission,
)
from tests.factories import actor, make_member, make_organization

from .test_groups_support import make_group

pytestmark = pytest.mark.django_db

NAMES = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
ORDERINGS = [
    ("name", "id"),
    ("-name", "-id"),
    ("name", "-id"),
    ("name", "pk"),
    ("id",),
    ("-pk",),
]


def view_permission() -> Permission:
    return Permission.objects.get(codename="view_devicegroup", content_type__app_label="devices")


def grant_names(model: Any) -> list[tuple[str, str]]:
    """(group name, the grant's copy) for every grant row of ``model``."""
    return sorted(model.objects.values_list("content_object__name", "object_name"))


# --- the sort key beside the grant ------------------------------------------------------------


def test_every_writer_gets_the_groups_name_on_the_grant(tree):
    user = make_member(tree["hospital"], Role.VIEWER)
    lobby, pos = make_group(tree["acme"], "lobby"), make_group(tree["globex"], "pos")
    assign_perm("view_devicegroup", user, lobby)
    assign_perm("change_devicegroup", groups.organization_auth_group(tree["hospital"]), pos)
    DeviceGroupUserObjectPermission.objects.bulk_create(
        [
            DeviceGroupUserObjectPermission(
                user=user, permission=view_permission(), content_object=pos, object_name="wrong"
            )
        ]
    )
    stale = DeviceGroupUserObjectPermission.objects.get(content_object=lobby)
    stale.object_name = "edited"
    stale.save()
    assert grant_names(DeviceGroupUserObjectPermission) == [("lobby", "lobby"), ("pos", "pos")]
    assert grant_names(DeviceGroupGroupObjectPermission) == [("pos", "pos")]


def test_a_rename_reaches_every_grant_of_that_group_only(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    user = make_member(tree["hospital"], Role.VIEWER)
    lobby, pos = make_group(tree["acme"], "lobby"), make_group(tree["acme"], "pos")
    for group in (lobby, pos):
        assign_perm("view_devicegroup", user, group)
        assign_perm("view_devicegroup", groups.organization_auth_group(tree["globex"]), group)
    groups.group_update(actor=actor(owner), group=lobby, name="entrance")
    assert grant_names(DeviceGroupUserObjectPermission) == [
        ("entrance", "entrance"),
        ("pos", "pos"),
    ]
    DeviceGroup.objects.filter(pk=pos.pk).update(name="checkout")
    assert grant_names(DeviceGroupUserObjectPermission) == [
        ("checkout", "checkout"),
        ("entrance", "entrance"),
    ]
    assert grant_names(DeviceGroupGroupObjectPermission) == [
        ("checkout", "checkout"),
        ("entrance", "entrance"),
    ]


def test_a_grant_written_before_its_group_in_one_transaction_gets_the_name(tree):
    user = make_member(tree["hospital"], Role.VIEWER)
    group_id = uuid.uuid4()
    with transaction.atomic():  # the foreign keys are checked at commit
        DeviceGroupUserObjectPermission.objects.bulk_create(  # save() would load the group
            [
                DeviceGroupUserObjectPermission(
                    user=user, permission=view_permission(), content_object_id=group_id
                )
            ]
        )
        DeviceGroup.objects.create(id=group_id, organization=tree["acme"], name="early")
    assert grant_names(DeviceGroupUserObjectPermission) == [("early", "early")]


# --- pages ------------------------------------------------------------------------------------


@pytest.fixture
def crowd(tree):
    """A retail owner who sees 12 groups of retail and store through the role and 32 more
    through grants to the user and to retail; names repeat across organizations."""
    rng = random.Random(3)
    owner = make_member(tree["retail"], Role.OWNER)
    other = make_member(tree["acme"], Role.OWNER)
    organizations = [tree[key] for key in ("acme", "globex", "hospital", "retail", "store")]
    organizations += [make_organization(f"Globex customer {i}", tree["globex"]) for i in range(4)]
    made = [
        make_group(organization, name)
        for organization in organizations
        for name in rng.sample(NAMES, 6)
    ]
    retail_ids = {tree["retail"].pk, tree["store"].pk}
    outside = [group for group in made if group.organization_id not in retail_ids]
    inside = [group for group in made if group.organization_id in retail_ids]
    for group in [*rng.sample(outside, 30), inside[0]]:
        assign_perm("view_devicegroup", owner, group)
    retail_group = groups.organization_auth_group(tree["retail"])
    for group in [*rng.sample(outside, 8), inside[1]]:
        assign_perm("view_devicegroup", retail_group, group)
    for group in rng.sample(outside, 5):
        assign_perm("change_devicegroup", owner, group)  # not a view grant
        assign_perm("view_devicegroup", other, group)  # someone else's grant
    DeviceGroup.objects.filter(pk=outside[0].pk).update(name="aardvark")  # renamed after sharing
    return {"owner": actor(owner), "tree": tree}


def whole_scope(who):
    """The reference: the same scope with every grant, worded ``IN (subquery)``."""
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


def test_the_scope_has_the_size_the_pages_walk_through(crowd):
    assert whole_scope(crowd["owner"]).count() == 44
    assert groups.group_list(actor=crowd["owner"]).count() == 44


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_every_slice_of_every_ordering_is_the_whole_scopes_slice(crowd, ordering):
    who = crowd["owner"]
    scoped = DeviceGroup.objects.for_actor(who, "view").order_by(*ordering)
    expected = list(whole_scope(who).order_by(*ordering).values_list("pk", flat=True))
    assert len(expected) == 44
    for low in range(0, 48, 4):
        for high in range(low + 1, 50, 5):
            assert list(scoped[low:high].values_list("pk", flat=True)) == expected[low:high]
            assert [group.pk for group in scoped[low:high]] == expected[low:high]


@pytest.mark.parametrize("direction", ["", "-"])
def test_a_page_by_name_alone_has_the_whole_scopes_names(crowd, direction):
    """Ties between equal names are the database's to break; the names are not."""
    who = crowd["owner"]
    expected = list(whole_scope(who).order_by(f"{direction}name").values_list("name", flat=True))
    scoped = DeviceGroup.objects.for_actor(who, "view")
    for low, high in [(0, 1), (0, 6), (3, 9), (10, 30), (40, 60)]:
        page = scoped.order_by(f"{direction}name")[low:high]
        assert [group.name for group in page] == expected[low:high]
    default = scoped.reverse() if direction else scoped  # the model's ordering: name
    assert [group.name for group in default[:12]] == expected[:12]


def test_a_reversed_page_is_the_whole_scopes_reversed_page(crowd):
    who = crowd["owner"]
    expected = list(whole_scope(who).order_by("-name", "-id").values_list("pk", flat=True))
    page = DeviceGroup.objects.for_actor(who, "view").order_by("name", "id").reverse()[2:9]
    assert [group.pk for group in page] == expected[2:9]


def grant_limits(queryset) -> int:
    """How many subqueries of the compiled query are cut to a number of first rows."""
    sql, _ = queryset.query.get_compiler(using="default").as_sql()
    return sql.count(" LIMIT ") - (1 if queryset.query.is_sliced else 0)


def test_a_page_cuts_both_grant_subqueries_and_stays_one_query(crowd):
    who = crowd["owner"]
    page = groups.group_list(actor=who).order_by("name", "id")[:7]
    with CaptureQueriesContext(connection) as queries:
        assert len(list(page)) == 7
    assert len(queries) == 1
    sql = queries[0]["sql"]
    assert sql.count("LIMIT 7") == 3  # the user grants, the organization grants, the page
    assert sql.count('"object_name" ASC') == 2
    assert grant_limits(DeviceGroup.objects.for_actor(who, "view").order_by("-id")[:7]) == 2


NARROWED = {
    "filter": lambda scoped: scoped.filter(kind="static").order_by("name", "id")[:7],
    "exclude": lambda scoped: scoped.exclude(name="alpha").order_by("name", "id")[:7],
    "or-filter": lambda scoped: scoped.filter(Q(name="beta") | Q(name="eta")).order_by("name")[:7],
    "created": lambda scoped: scoped.order_by("-created_at", "-id")[:7],
    "join": lambda scoped: scoped.order_by("organization__name", "id")[:7],
    "unsliced": lambda scoped: scoped.order_by("name", "id"),
    "distinct-on": lambda scoped: scoped.order_by("name", "id").distinct("name")[:7],
    "group-by": lambda scoped: scoped.annotate(n=Count("memberships")).order_by("name", "id")[:7],
    "or": lambda scoped: (scoped | DeviceGroup.objects.filter(name="zeta")).order_by("name")[:7],
}


@pytest.mark.parametrize("narrowing", NARROWED)
def test_anything_but_a_plain_page_keeps_every_grant(crowd, narrowing):
    who, narrowed = crowd["owner"], NARROWED[narrowing]
    scoped = DeviceGroup.objects.for_actor(who, "view")
    assert grant_limits(narrowed(scoped)) == 0
    expected = narrowed(whole_scope(who))
    assert list(narrowed(scoped).values_list("name", flat=True)) == list(
        expected.values_list("name", flat=True)
    )


def test_a_skip_locked_page_keeps_every_grant(crowd):
    scoped = DeviceGroup.objects.for_actor(crowd["owner"], "view")
    with transaction.atomic():
        page = scoped.select_for_update(skip_locked=True, of=("self",)).order_by("name", "id")
        assert grant_limits(page[:7]) == 0
        assert len(list(page[:7])) == 7


def test_a_lookup_by_id_through_the_page_machinery_finds_a_far_grant(crowd):
    who = crowd["owner"]
    last = whole_scope(who).order_by("name", "id").last()
    assert groups.group_list(actor=who).get(pk=last.pk) == last
    assert groups.group_list(actor=who).filter(pk=last.pk).exists()


@pytest.fixture
def repeated(tree):
    """A hospital viewer (no groups in hospital) shared four groups named alpha and one beta."""
    viewer = make_member(tree["hospital"], Role.VIEWER)
    for key in ("acme", "globex", "retail", "store"):
        assign_perm("view_devicegroup", viewer, make_group(tree[key], "alpha"))
    assign_perm("view_devicegroup", viewer, make_group(tree["acme"], "beta"))
    return actor(viewer)


def test_distinct_names_of_a_page_keep_every_grant(repeated):
    scoped = DeviceGroup.objects.for_actor(repeated, "view").order_by("name")
    page = scoped.values_list("name", flat=True).distinct()[:2]
    assert grant_limits(page) == 0
    assert list(page) == ["alpha", "beta"]


def test_a_window_over_a_page_keeps_every_grant(repeated):
    scoped = DeviceGroup.objects.for_actor(repeated, "view")
    page = scoped.annotate(seen=Window(Count("id"))).order_by("name", "id")[:1]
    assert grant_limits(page) == 0
    assert [group.seen for group in page] == [5]


def _waiting_for_a_lock(database: psycopg.Connection) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        row = database.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
        if row is not None and row[0] > 0:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first", ["rename", "share"])
def test_a_share_and_a_rename_at_the_same_time_leave_the_new_name(tree, first):
    """Two transactions: the second waits for the first (the grant trigger reads the group
    FOR SHARE), so the grant ends with the name that was committed last."""
    user = make_member(tree["hospital"], Role.VIEWER)
    group = make_group(tree["acme"], "lobby")
    statements = {
        "rename": ("UPDATE devices_devicegroup SET name = 'entrance' WHERE id = %s", [group.pk]),
        "share": (
            "INSERT INTO devices_devicegroupuserobjectpermission "
            "(user_id, permission_id, content_object_id, object_name) VALUES (%s, %s, %s, '')",
            [user.pk, view_permission().pk, group.pk],
        ),
    }
    second = "share" if first == "rename" else "rename"
    params = connection.get_connection_params()
    with (
        psycopg.connect(**params) as one,
        psycopg.connect(**params) as two,
        psycopg.connect(**params, autocommit=True) as watcher,
    ):
        one.execute(*statements[first])
        worker = threading.Thread(target=lambda: (two.execute(*statements[second]), two.commit()))
        worker.start()
        assert _waiting_for_a_lock(watcher)
        one.commit()
        worker.join(timeout=10)
    assert grant_names(DeviceGroupUserObjectPermission) == [("entrance", "entrance")]
