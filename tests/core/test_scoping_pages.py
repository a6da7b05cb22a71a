"""``for_actor`` pages on a model whose grant rows carry no copy of its fields
(``tests.testapp.Widget``): a page by id takes the first grants by ``content_object_id``; a page
by name keeps every grant. Either way the page is the whole scope's page."""

from __future__ import annotations

import pytest
from django.db.models import Q
from guardian.shortcuts import assign_perm

from apps.accounts.roles import Role
from apps.core.scoping import organization_ids_under
from tests.factories import actor, make_member
from tests.testapp.models import Widget, WidgetUserObjectPermission

pytestmark = pytest.mark.django_db


@pytest.fixture
def shared(tree):
    """An acme viewer who sees acme's 4 widgets through the role and 6 of globex's 9 through
    grants to the user (a 7th grant is for ``change`` only)."""
    viewer = make_member(tree["acme"], Role.VIEWER)
    for i in range(4):
        Widget.objects.create(organization=tree["acme"], name=f"acme {i}")
    outside = [Widget.objects.create(organization=tree["globex"], name=f"g {i}") for i in range(9)]
    for widget in outside[1::2] + outside[:3]:
        assign_perm("view_widget", viewer, widget)
    assign_perm("change_widget", viewer, outside[8])
    return actor(viewer)


def whole_scope(who):
    grants = WidgetUserObjectPermission.objects.filter(
        user_id=who.user_id, permission__codename="view_widget"
    )
    paths = who.paths_for("devicegroup.view")
    return Widget.objects.filter(
        Q(organization__in=organization_ids_under(paths))
        | Q(pk__in=grants.values("content_object_id"))
    )


def limits(queryset) -> int:
    sql, _ = queryset.query.get_compiler(using="default").as_sql()
    return sql.count(" LIMIT ") - (1 if queryset.query.is_sliced else 0)


@pytest.mark.parametrize("ordering", [("id",), ("-id",), ("-pk",), ("name", "id")])
def test_pages_are_the_whole_scopes_pages(shared, ordering):
    expected = list(whole_scope(shared).order_by(*ordering).values_list("name", flat=True))
    assert len(expected) == 10
    scoped = Widget.objects.for_actor(shared, "view").order_by(*ordering)
    for low, high in [(0, 1), (0, 3), (2, 5), (4, 9), (0, 10), (7, 20)]:
        assert list(scoped[low:high].values_list("name", flat=True)) == expected[low:high]
    assert limits(scoped[:3]) == (0 if ordering[0] == "name" else 1)
