"""Device-group services: static membership, dynamic filters that always reflect the fleet,
groups referencing groups, and sharing through django-guardian's direct foreign-key tables."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from guardian.models import GroupObjectPermission, UserObjectPermission

from apps.accounts.actors import actor_for_api_key
from apps.accounts.models import APIKey
from apps.accounts.roles import Role
from apps.core.models import AuditLog, Event
from apps.devices import groups
from apps.devices.choices import DeviceState, GroupKind
from apps.devices.models import (
    DeviceGroup,
    DeviceGroupGroupObjectPermission,
    DeviceGroupUserObjectPermission,
    GroupMembership,
)
from apps.devices.selection import MAX_GROUP_DEPTH, selection_q
from tests.factories import actor, make_member

from .test_groups_support import make_device, make_group, make_version, serials

pytestmark = pytest.mark.django_db

ACTIVE = {"kind": GroupKind.DYNAMIC, "filter": {"state": ["active"]}}
VIEW = {"permissions": ["view"]}
CHANGE = {"permissions": ["change", "view"]}


@pytest.fixture
def fleet(tree):
    version = make_version(tree["acme"])
    return {
        "version": version,
        "acme-1": make_device(tree["acme"], version, "A-1", state=DeviceState.ACTIVE),
        "retail-1": make_device(tree["retail"], version, "R-1", state=DeviceState.ACTIVE),
        "retail-2": make_device(tree["retail"], version, "R-2", tags=["eu"]),
        "store-1": make_device(tree["store"], version, "S-1", state=DeviceState.ACTIVE),
        "globex-1": make_device(tree["globex"], version, "G-1", state=DeviceState.ACTIVE),
    }


@pytest.fixture
def acme_owner(tree):
    return actor(make_member(tree["acme"], Role.OWNER))


def members(who, group) -> list[str]:
    return serials(groups.group_members(actor=who, group=group))


def table_count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
        return cursor.fetchone()[0]


# --- create / update / delete ------------------------------------------------------------------


def test_it_creates_a_dynamic_group_with_its_audit_record_and_event(tree, acme_owner):
    group = groups.group_create(
        actor=acme_owner,
        organization=tree["retail"],
        name=" Active ",
        description="in service",
        kind=GroupKind.DYNAMIC,
        filter={"state": ["active"]},
    )
    assert (group.name, group.kind, group.filter) == ("Active", "dynamic", {"state": ["active"]})
    audit = AuditLog.objects.get(action="devicegroup.create")
    assert (audit.object_id, audit.organization_id, audit.changes) == (
        str(group.pk),
        tree["retail"].pk,
        {
            "organization": [None, str(tree["retail"].pk)],
            "name": [None, "Active"],
            "description": [None, "in service"],
            "kind": [None, "dynamic"],
            "filter": [None, {"state": ["active"]}],
        },
    )
    event = Event.objects.get(type="group.created")
    assert event.payload == {
        "id": str(group.pk),
        "name": "Active",
        "kind": "dynamic",
        "filter": {"state": ["active"]},
    }


@pytest.mark.parametrize(
    ("spec", "errors"),
    [
        ({"state": ["bogus"]}, {"filter.state": ["Unknown value(s): bogus."]}),
        ({"colour": ["red"]}, {"filter.colour": ["Unknown filter."]}),
        (["active"], {"filter": ["Must be an object."]}),
        ({"group": ["not-an-id"]}, {"filter.group": ["Must be a list of ids."]}),
    ],
)
def test_it_refuses_a_bad_dynamic_filter_naming_the_key(tree, acme_owner, spec, errors):
    with pytest.raises(ValidationError) as raised:
        groups.group_create(
            actor=acme_owner,
            organization=tree["acme"],
            name="Bad",
            kind=GroupKind.DYNAMIC,
            filter=spec,
        )
    assert raised.value.message_dict == errors
    assert DeviceGroup.objects.count() == 0


def test_it_refuses_a_filter_on_a_static_group_and_a_duplicate_name(tree, acme_owner):
    make_group(tree["acme"], "Lobby")
    with pytest.raises(ValidationError) as raised:
        groups.group_create(
            actor=acme_owner, organization=tree["acme"], name="X", filter={"state": ["active"]}
        )
    assert raised.value.message_dict == {"filter": ["Only a dynamic group has a filter."]}
    with pytest.raises(ValidationError) as raised:
        groups.group_create(actor=acme_owner, organization=tree["acme"], name="Lobby")
    assert raised.value.message_dict == {"name": ["A group with this name already exists here."]}


def test_it_refuses_to_create_where_the_actor_may_not_add(tree):
    viewer = actor(make_member(tree["acme"], Role.VIEWER))
    with pytest.raises(PermissionDenied):
        groups.group_create(actor=viewer, organization=tree["acme"], name="Nope")
    assert DeviceGroup.objects.count() == 0


def test_an_update_records_only_what_changed(tree, acme_owner):
    group = make_group(tree["acme"], "Old", **ACTIVE)
    groups.group_update(actor=acme_owner, group=group, name="New", filter={"state": ["active"]})
    audit = AuditLog.objects.get(action="devicegroup.update")
    assert audit.changes == {"name": ["Old", "New"]}
    assert Event.objects.get(type="group.updated").payload["changes"] == {"name": ["Old", "New"]}


def test_delete_removes_memberships_and_shares_but_not_devices(tree, fleet, acme_owner):
    group = make_group(tree["acme"], "Doomed", devices=[fleet["acme-1"]])
    contractor = make_member(tree["globex"], Role.VIEWER)
    groups.group_share(actor=acme_owner, group=group, user=contractor)
    groups.group_delete(actor=acme_owner, group=group)
    assert (DeviceGroup.objects.count(), GroupMembership.objects.count()) == (0, 0)
    assert DeviceGroupUserObjectPermission.objects.count() == 0
    assert fleet["acme-1"].__class__.objects.filter(pk=fleet["acme-1"].pk).exists()
    assert list(
        Event.objects.filter(type="group.deleted").values_list("subject_id", flat=True)
    ) == [""]


# --- static membership -------------------------------------------------------------------------


def test_adding_devices_accepts_visible_ones_in_the_subtree_and_rejects_the_rest(
    tree, fleet, acme_owner
):
    group = make_group(tree["retail"], "Retail")
    wanted = [fleet["retail-1"].pk, fleet["store-1"].pk, fleet["acme-1"].pk, fleet["globex-1"].pk]
    change = groups.group_add_devices(actor=acme_owner, group=group, device_ids=wanted)
    assert change == groups.MembershipChange(
        count=2, rejected=sorted([fleet["acme-1"].pk, fleet["globex-1"].pk])
    )
    assert members(acme_owner, group) == ["R-1", "S-1"]
    audit = AuditLog.objects.get(action="devicegroup.add_devices")
    assert audit.changes == {
        "devices": [None, sorted([str(fleet["retail-1"].pk), str(fleet["store-1"].pk)])]
    }
    assert Event.objects.get(type="group.devices_added").payload["count"] == 2


def test_adding_the_same_devices_again_adds_nothing_and_records_nothing(tree, fleet, acme_owner):
    group = make_group(tree["retail"], "Retail", devices=[fleet["retail-1"]])
    change = groups.group_add_devices(
        actor=acme_owner, group=group, device_ids=[fleet["retail-1"].pk]
    )
    assert change == groups.MembershipChange(count=0, rejected=[])
    assert GroupMembership.objects.filter(group=group).count() == 1
    assert AuditLog.objects.filter(action="devicegroup.add_devices").count() == 0


def test_a_device_outside_the_actors_scope_is_rejected(tree, fleet):
    retail_operator = actor(make_member(tree["retail"], Role.OPERATOR))
    group = make_group(tree["retail"], "Retail")
    change = groups.group_add_devices(
        actor=retail_operator, group=group, device_ids=[fleet["acme-1"].pk, fleet["retail-2"].pk]
    )
    assert change == groups.MembershipChange(count=1, rejected=[fleet["acme-1"].pk])


def test_removing_devices_reports_non_members_as_rejected(tree, fleet, acme_owner):
    group = make_group(tree["retail"], "Retail", devices=[fleet["retail-1"], fleet["retail-2"]])
    change = groups.group_remove_devices(
        actor=acme_owner, group=group, device_ids=[fleet["retail-1"].pk, fleet["store-1"].pk]
    )
    assert change == groups.MembershipChange(count=1, rejected=[fleet["store-1"].pk])
    assert members(acme_owner, group) == ["R-2"]
    assert AuditLog.objects.get(action="devicegroup.remove_devices").changes == {
        "devices": [None, [str(fleet["retail-1"].pk)]]
    }


def test_a_dynamic_group_takes_no_explicit_members(tree, fleet, acme_owner):
    group = make_group(tree["acme"], "Dyn", kind=GroupKind.DYNAMIC, filter={})
    with pytest.raises(ValidationError) as raised:
        groups.group_add_devices(actor=acme_owner, group=group, device_ids=[fleet["acme-1"].pk])
    assert raised.value.message_dict == {
        "devices": ["A dynamic group's members come from its filter."]
    }


# --- dynamic groups always reflect current membership ------------------------------------------


def test_a_dynamic_group_follows_state_changes_immediately(tree, fleet, acme_owner):
    group = make_group(tree["acme"], "Active", **ACTIVE)
    assert members(acme_owner, group) == ["A-1", "R-1", "S-1"]
    fleet["retail-1"].state = DeviceState.MAINTENANCE
    fleet["retail-1"].save()
    fleet["retail-2"].state = DeviceState.ACTIVE
    fleet["retail-2"].save()
    assert members(acme_owner, group) == ["A-1", "R-2", "S-1"]


def test_a_dynamic_group_follows_tags_immediately(tree, fleet, acme_owner):
    group = make_group(tree["acme"], "EU", kind=GroupKind.DYNAMIC, filter={"tags_any": ["eu"]})
    assert members(acme_owner, group) == ["R-2"]
    fleet["store-1"].tags = ["eu", "lobby"]
    fleet["store-1"].save()
    assert members(acme_owner, group) == ["R-2", "S-1"]


def test_a_dynamic_group_only_counts_devices_inside_its_organization_subtree(
    tree, fleet, acme_owner
):
    group = make_group(
        tree["retail"], "Active", kind=GroupKind.DYNAMIC, filter={"state": ["active"]}
    )
    assert members(acme_owner, group) == ["R-1", "S-1"]
    fleet["store-1"].organization = tree["hospital"]  # moved out of retail's subtree
    fleet["store-1"].save()
    fleet["acme-1"].organization = tree["store"]  # moved in
    fleet["acme-1"].save()
    assert members(acme_owner, group) == ["A-1", "R-1"]


def test_a_dynamic_group_can_reference_static_and_dynamic_groups(tree, fleet, acme_owner):
    pinned = make_group(tree["acme"], "Pinned", devices=[fleet["retail-2"], fleet["globex-1"]])
    active = make_group(
        tree["acme"], "Active", kind=GroupKind.DYNAMIC, filter={"state": ["active"]}
    )
    union = groups.group_create(
        actor=acme_owner,
        organization=tree["acme"],
        name="Union",
        kind=GroupKind.DYNAMIC,
        filter={"group": [str(pinned.pk), str(active.pk)]},
    )
    nested = groups.group_create(
        actor=acme_owner,
        organization=tree["acme"],
        name="Union in retail",
        kind=GroupKind.DYNAMIC,
        filter={"group": [str(union.pk)], "organization": [str(tree["retail"].pk)]},
    )
    assert members(acme_owner, union) == ["A-1", "R-1", "R-2", "S-1"]
    assert members(acme_owner, nested) == ["R-1", "R-2", "S-1"]
    fleet["acme-1"].state = DeviceState.SUSPENDED
    fleet["acme-1"].save()
    GroupMembership.objects.filter(device=fleet["retail-2"]).delete()
    assert members(acme_owner, union) == ["R-1", "S-1"]


def test_a_group_cannot_end_up_containing_itself(tree, acme_owner):
    first = make_group(tree["acme"], "First", kind=GroupKind.DYNAMIC, filter={})
    second = groups.group_create(
        actor=acme_owner,
        organization=tree["acme"],
        name="Second",
        kind=GroupKind.DYNAMIC,
        filter={"group": [str(first.pk)]},
    )
    with pytest.raises(ValidationError) as raised:
        groups.group_update(actor=acme_owner, group=first, filter={"group": [str(second.pk)]})
    assert raised.value.message_dict == {
        "filter.group": ["A group cannot contain itself (directly or not)."]
    }
    first.refresh_from_db()
    assert first.filter == {}


def test_groups_nest_only_so_deep(tree, acme_owner):
    previous = make_group(tree["acme"], "Level 0", kind=GroupKind.DYNAMIC, filter={})
    for level in range(1, MAX_GROUP_DEPTH + 1):
        previous = make_group(
            tree["acme"],
            f"Level {level}",
            kind=GroupKind.DYNAMIC,
            filter={"group": [str(previous.pk)]},
        )
    with pytest.raises(ValidationError) as raised:
        selection_q({"group": [str(previous.pk)]})
    assert raised.value.message_dict == {
        "group": [f"Groups nest at most {MAX_GROUP_DEPTH} levels deep."]
    }


def test_a_filter_may_not_reference_a_group_the_actor_cannot_see(tree, acme_owner):
    foreign = make_group(tree["globex"], "Globex")
    with pytest.raises(ValidationError) as raised:
        groups.group_create(
            actor=acme_owner,
            organization=tree["acme"],
            name="Sneaky",
            kind=GroupKind.DYNAMIC,
            filter={"group": [str(foreign.pk)]},
        )
    assert raised.value.message_dict == {"filter.group": ["Unknown group(s)."]}


def test_members_are_limited_to_the_devices_the_actor_may_view(tree, fleet):
    key = APIKey.objects.create(
        organization=tree["acme"],
        name="groups only",
        role=Role.OWNER,
        prefix="fo_api_x",
        token_hash="x",
        permissions=["devicegroup.view"],
    )
    group = make_group(tree["acme"], "All", devices=[fleet["acme-1"], fleet["retail-1"]])
    assert members(actor(make_member(tree["acme"], Role.VIEWER)), group) == ["A-1", "R-1"]
    assert members(actor_for_api_key(key), group) == []


# --- sharing -----------------------------------------------------------------------------------


def test_sharing_with_a_user_lands_in_the_direct_foreign_key_table(tree, fleet, acme_owner):
    group = make_group(tree["retail"], "Shared", devices=[fleet["retail-1"], fleet["store-1"]])
    contractor = make_member(tree["globex"], Role.VIEWER)
    assert groups.group_share(actor=acme_owner, group=group, user=contractor) == ["view"]
    assert list(
        DeviceGroupUserObjectPermission.objects.values_list(
            "user_id", "content_object_id", "permission__codename"
        )
    ) == [(contractor.pk, group.pk, "view_devicegroup")]
    assert table_count("devices_devicegroupuserobjectpermission") == 1
    assert table_count(UserObjectPermission._meta.db_table) == 0
    who = actor(contractor)
    assert list(groups.group_list(actor=who).values_list("name", flat=True)) == ["Shared"]
    assert list(groups.group_list(actor=who, action="change")) == []
    assert members(who, group) == ["R-1", "S-1"]
    assert AuditLog.objects.get(action="devicegroup.share").changes == {
        "shared": [
            None,
            {"user": str(contractor.pk), "email": contractor.email, "permissions": ["view"]},
        ]
    }
    assert Event.objects.get(type="group.shared").payload["permissions"] == ["view"]


def test_sharing_with_an_organization_uses_its_auth_group_created_on_first_use(
    tree, fleet, acme_owner
):
    group = make_group(tree["acme"], "Shared", devices=[fleet["acme-1"]])
    globex_viewer = actor(make_member(tree["globex"], Role.VIEWER))
    assert tree["globex"].auth_group_id is None
    groups.group_share(
        actor=acme_owner, group=group, organization=tree["globex"], permission="change"
    )
    tree["globex"].refresh_from_db()
    assert tree["globex"].auth_group.name == f"org:{tree['globex'].pk}"
    assert sorted(
        DeviceGroupGroupObjectPermission.objects.values_list("group_id", "permission__codename")
    ) == [
        (tree["globex"].auth_group_id, "change_devicegroup"),
        (tree["globex"].auth_group_id, "view_devicegroup"),
    ]
    assert table_count(GroupObjectPermission._meta.db_table) == 0
    assert list(groups.group_list(actor=globex_viewer).values_list("name", flat=True)) == ["Shared"]
    assert members(globex_viewer, group) == ["A-1"]
    assert [(s.organization, s.permissions) for s in groups.group_shares(group=group)] == [
        (tree["globex"], ["change", "view"])
    ]


def test_unsharing_withdraws_every_grant(tree, fleet, acme_owner):
    group = make_group(tree["acme"], "Shared")
    contractor = make_member(tree["globex"], Role.VIEWER)
    groups.group_share(actor=acme_owner, group=group, user=contractor, permission="change")
    assert groups.group_unshare(actor=acme_owner, group=group, user=contractor) == 2
    assert DeviceGroupUserObjectPermission.objects.count() == 0
    assert list(groups.group_list(actor=actor(contractor))) == []
    assert AuditLog.objects.get(action="devicegroup.unshare").changes == {
        "shared": [
            {
                "user": str(contractor.pk),
                "email": contractor.email,
                "permissions": ["change", "view"],
            },
            None,
        ]
    }


def test_only_a_holder_of_devicegroup_share_may_share(tree, acme_owner):
    group = make_group(tree["acme"], "Shared")
    operator = actor(make_member(tree["acme"], Role.OPERATOR))
    with pytest.raises(PermissionDenied):
        groups.group_share(actor=operator, group=group, user=make_member(tree["globex"], "viewer"))
    assert DeviceGroupUserObjectPermission.objects.count() == 0


def test_a_change_share_cannot_widen_a_dynamic_filter(tree, fleet, acme_owner):
    group = make_group(tree["acme"], "Active", **ACTIVE)
    contractor = make_member(tree["globex"], Role.VIEWER)
    groups.group_share(actor=acme_owner, group=group, user=contractor, permission="change")
    who = actor(contractor)
    with pytest.raises(PermissionDenied):
        groups.group_update(actor=who, group=group, filter={})
    groups.group_update(actor=who, group=group, name="Renamed", filter={"state": ["active"]})
    group.refresh_from_db()
    assert (group.name, group.filter) == ("Renamed", {"state": ["active"]})
