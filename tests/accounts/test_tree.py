from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.accounts import services
from apps.accounts.models import Organization
from apps.accounts.roles import Role
from apps.core.actors import SYSTEM

from ..factories import actor, make_member

pytestmark = pytest.mark.django_db


def visible(user) -> set[str]:
    return set(Organization.objects.for_actor(actor(user), "view").values_list("name", flat=True))


def test_a_role_on_a_parent_reaches_the_whole_subtree(tree):
    user = make_member(tree["acme"], Role.VIEWER)
    assert visible(user) == {"Acme", "Retail Co", "Hospital", "Store 1"}


def test_a_child_does_not_see_its_parent_or_its_siblings(tree):
    user = make_member(tree["retail"], Role.ADMIN)
    assert visible(user) == {"Retail Co", "Store 1"}


def test_sibling_manufacturers_are_isolated(tree):
    acme_user = make_member(tree["acme"], Role.OWNER)
    globex_user = make_member(tree["globex"], Role.OWNER)
    assert "Globex" not in visible(acme_user)
    assert visible(globex_user) == {"Globex"}


def test_a_subtree_is_one_indexed_query(tree, django_assert_num_queries):
    user = make_member(tree["acme"], Role.VIEWER)
    user_actor = actor(user)
    with django_assert_num_queries(1) as context:
        names = list(
            Organization.objects.for_actor(user_actor, "view").values_list("name", flat=True)
        )
    assert sorted(names) == ["Acme", "Hospital", "Retail Co", "Store 1"]
    assert "LIKE" in context.captured_queries[0]["sql"]


def test_moving_a_subtree_moves_visibility_with_it(tree):
    globex_user = make_member(tree["globex"], Role.VIEWER)
    acme_user = make_member(tree["acme"], Role.VIEWER)
    services.organization_move(actor=SYSTEM, organization=tree["retail"], new_parent=tree["globex"])
    assert visible(globex_user) == {"Globex", "Retail Co", "Store 1"}
    assert visible(acme_user) == {"Acme", "Hospital"}
    store = Organization.objects.get(pk=tree["store"].pk)
    assert (
        store.path
        == tree["platform"].path
        + tree["globex"].id.hex
        + "/"
        + tree["retail"].id.hex
        + "/"
        + tree["store"].id.hex
        + "/"
    )
    assert store.depth == 3


def test_an_organization_cannot_move_below_itself(tree):
    with pytest.raises(ValidationError):
        services.organization_move(
            actor=SYSTEM, organization=tree["acme"], new_parent=tree["store"]
        )
    assert Organization.objects.get(pk=tree["store"].pk).path.startswith(tree["acme"].path)
