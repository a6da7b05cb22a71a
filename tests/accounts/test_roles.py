"""The role table, tested as a table: a change to ``roles.py`` must change a row here too."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.accounts import services
from apps.accounts.models import Membership
from apps.accounts.roles import ROLE_PERMISSIONS, Role, can_grant, permissions_for

from ..factories import UserFactory, actor, make_member

ROLES = ["owner", "admin", "operator", "approver", "technician", "viewer", "billing"]

# fmt: off
PERMISSIONS = [
    "organization.view", "organization.change", "organization.delete", "organization.move",
    "membership.view", "membership.add", "apikey.add", "auditlog.view", "auditlog.export",
    "event.redeliver", "device.view", "device.add", "device.transition", "command.execute",
    "changerequest.approve", "deployment.add", "secret.change", "billing.view",
    "billing.change", "credential.view", "credential.delete", "certificateauthority.add",
    "enrollmentpolicy.add", "notificationchannel.view", "notificationchannel.add",
    "telemetry.replay",
]
# One column per entry of PERMISSIONS, in order: x = granted, . = not granted.
#                org      mem ak audit ev  device    cmd cr dep sec bill cred ca ep  nc  rp
TABLE = {
    "owner":      "x x x x  x x  x  x x   x   x x x   x   x  x   x   x x  x x x x x x  x",
    "admin":      "x x . x  x x  x  x x   x   x x x   x   x  x   x   x .  x x x x x x  x",
    "operator":   "x . . .  x .  .  . .   .   x x x   x   .  x   .   . .  x x . . x .  x",
    "approver":   "x . . .  x .  .  x .   .   x . .   .   x  .   .   . .  x . . . x .  .",
    "technician": "x . . .  . .  .  . .   .   x . x   .   .  .   .   . .  x . . . x .  .",
    "viewer":     "x . . .  . .  .  . .   .   x . .   .   .  .   .   . .  x . . . x .  .",
    "billing":    "x . . .  . .  .  . .   .   . . .   .   .  .   .   x x  . . . . . .  .",
}
# Rows: the granter's role; columns: the role granted, in the order of ROLES.
GRANTS = {
    "owner":      "x x x x x x x",
    "admin":      ". x x x x x .",
    "operator":   ". . x . x x .",
    "approver":   ". . . x . x .",
    "technician": ". . . . x x .",
    "viewer":     ". . . . . x .",
    "billing":    ". . . . . . x",
}
# fmt: on


def expected(row: str) -> list[bool]:
    return [mark == "x" for mark in row.split()]


CASES = [
    (role, permission, expected(TABLE[role])[index])
    for role in ROLES
    for index, permission in enumerate(PERMISSIONS)
]
GRANT_CASES = [
    (granter, granted, expected(GRANTS[granter])[index])
    for granter in ROLES
    for index, granted in enumerate(ROLES)
]


def test_the_table_covers_exactly_the_roles():
    assert sorted(ROLE_PERMISSIONS) == sorted(ROLES) == sorted(Role.values)
    assert {len(expected(row)) for row in TABLE.values()} == {len(PERMISSIONS)}
    assert {len(expected(row)) for row in GRANTS.values()} == {len(ROLES)}


@pytest.mark.parametrize(("role", "permission", "granted"), CASES)
def test_role_permission(role, permission, granted):
    assert (permission in permissions_for(role)) is granted


@pytest.mark.parametrize(("granter", "granted", "allowed"), GRANT_CASES)
def test_can_grant(granter, granted, allowed):
    assert can_grant(permissions_for(granter), granted) is allowed


def test_every_permission_is_resource_dot_action():
    malformed = [
        permission
        for permissions in ROLE_PERMISSIONS.values()
        for permission in permissions
        if permission.count(".") != 1 or not all(permission.split("."))
    ]
    assert malformed == []


# --- the rules applied by the services ---------------------------------------------------------


@pytest.mark.django_db
def test_it_refuses_an_admin_granting_owner(tree):
    admin = make_member(tree["acme"], Role.ADMIN)
    with pytest.raises(ValidationError) as error:
        services.membership_create(
            actor=actor(admin), organization=tree["retail"], user=UserFactory(), role=Role.OWNER
        )
    assert error.value.message_dict == {
        "role": ["You cannot grant a role with more rights than your own."]
    }
    assert Membership.objects.filter(organization=tree["retail"]).count() == 0


@pytest.mark.django_db
def test_an_admin_grants_an_approver_below_its_organization(tree):
    admin = make_member(tree["acme"], Role.ADMIN)
    user = UserFactory()
    services.membership_create(
        actor=actor(admin), organization=tree["store"], user=user, role=Role.APPROVER
    )
    assert list(Membership.objects.filter(user=user).values_list("organization__name", "role")) == [
        ("Store 1", "approver")
    ]


@pytest.mark.django_db
def test_a_role_on_a_sibling_grants_nothing(tree):
    owner = make_member(tree["globex"], Role.OWNER)
    with pytest.raises(ValidationError) as error:
        services.membership_create(
            actor=actor(owner), organization=tree["acme"], user=UserFactory(), role=Role.VIEWER
        )
    assert error.value.message_dict == {
        "role": ["You cannot grant a role with more rights than your own."]
    }


@pytest.mark.django_db
def test_it_refuses_an_admin_demoting_an_owner(tree):
    make_member(tree["acme"], Role.OWNER)
    second_owner = make_member(tree["acme"], Role.OWNER)
    admin = make_member(tree["acme"], Role.ADMIN)
    membership = Membership.objects.get(user=second_owner)
    with pytest.raises(ValidationError) as error:
        services.membership_change_role(actor=actor(admin), membership=membership, role=Role.VIEWER)
    assert error.value.message_dict == {
        "role": ["You cannot grant a role with more rights than your own."]
    }
    assert Membership.objects.get(pk=membership.pk).role == "owner"
