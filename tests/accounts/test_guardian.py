"""Explicit per-object grants through django-guardian's direct foreign-key tables.

``tests.testapp.Widget`` is scoped like a device group (``scope_resource = "devicegroup"``);
sharing one with a user of another organization makes exactly that object visible to them, for
exactly the granted action.
"""

from __future__ import annotations

import pytest
from django.db import connection
from guardian.models import UserObjectPermission
from guardian.shortcuts import assign_perm, remove_perm

from apps.accounts.roles import Role
from tests.testapp.models import Widget, WidgetUserObjectPermission

from ..factories import actor, make_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def widgets(tree) -> dict[str, Widget]:
    return {
        "acme": Widget.objects.create(organization=tree["acme"], name="acme-lobby"),
        "shared": Widget.objects.create(organization=tree["globex"], name="globex-shared"),
        "private": Widget.objects.create(organization=tree["globex"], name="globex-private"),
    }


def names(user, action: str) -> list[str]:
    return sorted(Widget.objects.for_actor(actor(user), action).values_list("name", flat=True))


def table_count(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
        return cursor.fetchone()[0]


def test_a_user_of_another_organization_sees_nothing_before_a_grant(tree, widgets):
    contractor = make_member(tree["hospital"], Role.VIEWER)
    assert names(contractor, "view") == []


def test_a_grant_shares_exactly_one_object_for_exactly_one_action(tree, widgets):
    contractor = make_member(tree["hospital"], Role.VIEWER)
    assign_perm("view_widget", contractor, widgets["shared"])
    assert names(contractor, "view") == ["globex-shared"]
    assert names(contractor, "change") == []


def test_a_grant_adds_to_what_the_role_already_shows(tree, widgets):
    acme_viewer = make_member(tree["acme"], Role.VIEWER)
    assign_perm("view_widget", acme_viewer, widgets["shared"])
    assert names(acme_viewer, "view") == ["acme-lobby", "globex-shared"]


def test_a_grant_to_one_user_shows_nothing_to_another(tree, widgets):
    contractor = make_member(tree["hospital"], Role.VIEWER)
    colleague = make_member(tree["hospital"], Role.VIEWER)
    assign_perm("view_widget", contractor, widgets["shared"])
    assert names(colleague, "view") == []


def test_the_grant_row_lives_in_the_direct_foreign_key_table(tree, widgets):
    contractor = make_member(tree["hospital"], Role.VIEWER)
    assign_perm("view_widget", contractor, widgets["shared"])
    assert WidgetUserObjectPermission._meta.db_table == "testapp_widgetuserobjectpermission"
    assert list(
        WidgetUserObjectPermission.objects.values_list(
            "user_id", "content_object_id", "permission__codename"
        )
    ) == [(contractor.pk, widgets["shared"].pk, "view_widget")]
    assert table_count("testapp_widgetuserobjectpermission") == 1
    assert table_count(UserObjectPermission._meta.db_table) == 0


def test_removing_the_grant_hides_the_object_again(tree, widgets):
    contractor = make_member(tree["hospital"], Role.VIEWER)
    assign_perm("view_widget", contractor, widgets["shared"])
    remove_perm("view_widget", contractor, widgets["shared"])
    assert names(contractor, "view") == []
    assert table_count("testapp_widgetuserobjectpermission") == 0
