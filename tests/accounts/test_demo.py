"""``manage.py load_demo``: the demo tree, one login per role, idempotent."""

from __future__ import annotations

from io import StringIO

import pytest
from allauth.account.models import EmailAddress
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from apps.accounts.models import Membership, Organization, User
from apps.core.models import AuditLog, Event

pytestmark = pytest.mark.django_db

LOGINS = [
    ("owner@acme.example", "Acme Robotics", "owner"),
    ("admin@acme.example", "Acme Robotics", "admin"),
    ("operator@acme.example", "Acme Robotics", "operator"),
    ("approver@acme.example", "Acme Robotics", "approver"),
    ("technician@acme.example", "Acme Robotics", "technician"),
    ("viewer@acme.example", "Acme Robotics", "viewer"),
    ("billing@acme.example", "Acme Robotics", "billing"),
    ("owner@globex.example", "Globex Signage", "owner"),
    ("owner@northwind.example", "Northwind Hospitals", "owner"),
]


def load_demo() -> str:
    out = StringIO()
    call_command("load_demo", force=True, stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        "organizations": Organization.objects.count(),
        "users": User.objects.count(),
        "memberships": Membership.objects.count(),
        "verified_emails": EmailAddress.objects.filter(verified=True, primary=True).count(),
        "audit_rows": AuditLog.objects.count(),
        "events": Event.objects.count(),
    }


def test_it_builds_the_demo_tree():
    load_demo()
    tree = list(Organization.objects.values_list("name", "kind", "depth", "parent__name"))
    assert sorted(tree) == [
        ("Acme Robotics", "manufacturer", 1, "Fleetops"),
        ("Fleetops", "platform", 0, None),
        ("Globex Signage", "manufacturer", 1, "Fleetops"),
        ("Northwind General Hospital", "site", 3, "Northwind Hospitals"),
        ("Northwind Hospitals", "customer", 2, "Acme Robotics"),
    ]


def test_it_creates_one_login_per_role_and_a_superuser():
    load_demo()
    memberships = Membership.objects.values_list("user__email", "organization__name", "role")
    assert sorted(memberships) == sorted(LOGINS)
    superuser = User.objects.get(email="admin@fleetops.example")
    assert (superuser.is_staff, superuser.is_superuser, superuser.memberships.count()) == (
        True,
        True,
        0,
    )
    assert User.objects.filter(is_superuser=True).count() == 1


def test_every_login_has_a_verified_primary_address_and_the_demo_password():
    load_demo()
    users = User.objects.all()
    assert sorted(EmailAddress.objects.values_list("email", "verified", "primary")) == sorted(
        (user.email, True, True) for user in users
    )
    assert [user.email for user in users if not user.check_password("fleetops-demo")] == []


def test_the_writes_go_through_the_services_and_are_audited():
    load_demo()
    actions = AuditLog.objects.values_list("action", "source", "actor_label")
    assert sorted(set(actions)) == [
        ("membership.create", "system", "load_demo"),
        ("organization.create", "system", "load_demo"),
        ("user.create", "system", "load_demo"),
    ]
    assert counts() == {
        "organizations": 5,
        "users": 10,
        "memberships": 9,
        "verified_emails": 10,
        "audit_rows": 24,
        "events": 14,
    }


def test_running_it_twice_changes_nothing():
    first = load_demo()
    before = counts()
    snapshot = sorted(User.objects.values_list("email", "password", "is_active"))
    second = load_demo()
    assert counts() == before
    assert sorted(User.objects.values_list("email", "password", "is_active")) == snapshot
    assert first.splitlines()[0] == ("Demo data: created 5 organizations, 10 users, 9 memberships.")
    assert second.splitlines()[0] == ("Demo data: created 0 organizations, 0 users, 0 memberships.")


def test_it_prints_the_logins_and_the_password():
    lines = load_demo().splitlines()
    assert lines[2:14] == [
        "login                    role        organization",
        "admin@fleetops.example   superuser   (platform staff: everything)",
        "owner@acme.example       owner       Acme Robotics",
        "admin@acme.example       admin       Acme Robotics",
        "operator@acme.example    operator    Acme Robotics",
        "approver@acme.example    approver    Acme Robotics",
        "technician@acme.example  technician  Acme Robotics",
        "viewer@acme.example      viewer      Acme Robotics",
        "billing@acme.example     billing     Acme Robotics",
        "owner@globex.example     owner       Globex Signage",
        "owner@northwind.example  owner       Northwind Hospitals",
        "",
    ]
    assert lines[14] == "Password for every demo login: fleetops-demo"


def test_a_demo_login_signs_in_through_allauth():
    load_demo()
    client = Client()
    response = client.post(
        "/accounts/login/", {"login": "operator@acme.example", "password": "fleetops-demo"}
    )
    assert (response.status_code, response["Location"]) == (302, "/")


def test_it_refuses_to_run_without_debug_unless_forced():
    with pytest.raises(CommandError) as error:
        call_command("load_demo", stdout=StringIO())
    assert str(error.value) == "load_demo creates known passwords: it runs only with DEBUG on."
    assert Organization.objects.count() == 0
