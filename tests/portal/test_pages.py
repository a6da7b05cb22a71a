"""Portal pages: anonymous -> login, sibling organization -> 404, role without the permission
-> 403, allowed -> the exact state."""

from __future__ import annotations

import csv
import io

import pytest
from django.urls import reverse

from apps.accounts.models import Membership, Organization, User
from apps.accounts.roles import Role
from apps.core.models import AuditLog

ORGANIZATION_PAGES = [
    ("portal:dashboard", "organization.view"),
    ("portal:members", "membership.view"),
    ("portal:invitations", "invitation.view"),
    ("portal:api-keys", "apikey.view"),
    ("portal:audit-log", "auditlog.view"),
    ("portal:audit-log-export", "auditlog.export"),
]
# A role of acme that lacks each page's permission (every role may view the organization).
FORBIDDEN_ROLE = {
    "portal:members": "billing",
    "portal:invitations": "viewer",
    "portal:api-keys": "viewer",
    "portal:audit-log": "viewer",
    "portal:audit-log-export": "approver",
}


def page_url(name: str, organization: Organization) -> str:
    return reverse(name, kwargs={"organization_id": organization.pk})


@pytest.mark.parametrize(("name", "permission"), ORGANIZATION_PAGES)
def test_it_sends_an_anonymous_visitor_to_the_login_page(client, tree, name, permission):
    url = page_url(name, tree["acme"])
    response = client.get(url)
    assert response.status_code == 302
    assert response.url == f"/accounts/login/?next={url}"


@pytest.mark.parametrize(
    "url", ["/", "/account/security/", "/switch/"], ids=["home", "security", "switch"]
)
def test_it_sends_an_anonymous_visitor_to_the_login_page_from_account_pages(client, db, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response.url == f"/accounts/login/?next={url}"


@pytest.mark.parametrize(("name", "permission"), ORGANIZATION_PAGES)
def test_it_hides_a_sibling_organization_with_404(client, tree, people, name, permission):
    client.force_login(people["stranger"])
    response = client.get(page_url(name, tree["acme"]))
    assert response.status_code == 404


@pytest.mark.parametrize(("name", "role"), sorted(FORBIDDEN_ROLE.items()))
def test_it_refuses_a_role_without_the_page_permission(client, tree, people, name, role):
    client.force_login(people[role])
    response = client.get(page_url(name, tree["acme"]))
    assert response.status_code == 403


def test_it_hides_a_parent_organization_from_a_child_member_with_404(client, tree, people):
    child_owner = Membership.objects.create(
        organization=tree["retail"], user=people["stranger"], role=Role.OWNER
    )
    client.force_login(child_owner.user)
    assert client.get(page_url("portal:dashboard", tree["platform"])).status_code == 404


def test_it_shows_the_dashboard_with_children_and_member_count(client, tree, people):
    client.force_login(people["owner"])
    response = client.get(page_url("portal:dashboard", tree["acme"]))
    assert response.status_code == 200
    assert response.context["organization"] == tree["acme"]
    assert [child.name for child in response.context["children"]] == ["Hospital", "Retail Co"]
    assert response.context["member_count"] == 5
    assert response.context["pending_invitation_count"] == 0
    assert response.context["active_api_key_count"] == 0
    assert response.wsgi_request.session["portal_organization_id"] == str(tree["acme"].pk)


def test_it_hides_member_figures_from_a_billing_member(client, tree, people):
    client.force_login(people["billing"])
    response = client.get(page_url("portal:dashboard", tree["acme"]))
    assert response.status_code == 200
    assert "member_count" not in response.context
    # no alert.view: no notifications inbox either
    assert [item["label"] for item in response.context["nav_items"]] == ["Dashboard", "Security"]


def test_it_redirects_home_to_the_top_most_visible_organization(client, tree, people):
    client.force_login(people["owner"])
    response = client.get("/")
    assert response.status_code == 302
    assert response.url == page_url("portal:dashboard", tree["acme"])


def test_it_tells_a_user_without_organizations_to_wait_for_an_invitation(client, db):
    user = User.objects.create_user("alone@example.com", "correct horse battery")
    client.force_login(user)
    response = client.get("/")
    assert response.status_code == 200
    assert response.templates[0].name == "portal/no_organization.html"


def test_it_shows_navigation_allowed_by_the_role(client, tree, people):
    client.force_login(people["owner"])
    response = client.get(page_url("portal:members", tree["acme"]))
    assert [(item["label"], item["active"]) for item in response.context["nav_items"]] == [
        ("Dashboard", False),
        ("Members", True),
        ("Invitations", False),
        ("API keys", False),
        ("Audit log", False),
        ("Operations", False),
        ("Fleet dashboard", False),
        ("Devices", False),
        ("Alerts", False),
        ("Groups", False),
        ("Transfers", False),
        ("Profiles", False),
        ("Provisioning", False),
        ("Import devices", False),
        ("Enrollment", False),
        ("Certificates", False),
        ("Change requests", False),
        ("Approvals", False),
        ("Configuration", False),
        ("Notification channels", False),
        ("Dead letters", False),
        ("Notifications", False),
        ("Security", False),
    ]
    client.force_login(people["approver"])
    response = client.get(page_url("portal:dashboard", tree["acme"]))
    assert [item["label"] for item in response.context["nav_items"]] == [
        "Dashboard",
        "Members",
        "Audit log",
        "Fleet dashboard",
        "Devices",
        "Alerts",
        "Groups",
        "Transfers",
        "Profiles",
        "Provisioning",
        "Enrollment",
        "Certificates",
        "Change requests",
        "Approvals",
        "Configuration",
        "Notification channels",
        "Dead letters",
        "Notifications",
        "Security",
    ]


def test_it_offers_only_visible_organizations_in_the_switcher_in_tree_order(client, tree, people):
    client.force_login(people["owner"])
    response = client.get(page_url("portal:dashboard", tree["retail"]))
    switcher = response.context["switcher_organizations"]
    assert [(entry["label"], entry["current"]) for entry in switcher] == [
        ("Acme", False),
        ("\u2003Retail Co", True),
        ("\u2003\u2003Store 1", False),
        ("\u2003Hospital", False),
    ]


def test_it_switches_to_a_visible_organization(client, tree, people):
    client.force_login(people["owner"])
    response = client.post("/switch/", {"organization": str(tree["store"].pk)})
    assert response.status_code == 302
    assert response.url == page_url("portal:dashboard", tree["store"])
    assert client.session["portal_organization_id"] == str(tree["store"].pk)
    assert client.get("/").url == page_url("portal:dashboard", tree["store"])


def test_it_refuses_to_switch_to_a_sibling_organization_with_404(client, tree, people):
    client.force_login(people["owner"])
    client.get(page_url("portal:dashboard", tree["acme"]))
    response = client.post("/switch/", {"organization": str(tree["globex"].pk)})
    assert response.status_code == 404
    assert client.session["portal_organization_id"] == str(tree["acme"].pk)


def test_it_renders_the_security_page_with_mfa_links(client, people):
    client.force_login(people["viewer"])
    response = client.get("/account/security/")
    assert response.status_code == 200
    assert response.context["totp_active"] is False
    assert response.context["recovery_codes_active"] is False
    assert 'href="/accounts/2fa/totp/activate/"' in response.content.decode()


def test_it_styles_the_login_page_with_the_portal_layout(client, db):
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<link rel="stylesheet" href="/static/css/portal.css">' in html
    assert [template.name for template in response.templates][:3] == [
        "account/login.html",
        "account/base_entrance.html",
        "allauth/layouts/entrance.html",
    ]


def test_it_keeps_sign_up_closed_without_an_invitation(client, db):
    response = client.get("/accounts/signup/")
    assert response.status_code == 200
    assert response.templates[0].name == "account/signup_closed.html"
    response = client.post(
        "/accounts/signup/",
        {"email": "new@example.com", "password1": "x9!Plenty-long", "password2": "x9!Plenty-long"},
    )
    assert User.objects.filter(email="new@example.com").exists() is False


def _csv_rows(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_it_exports_the_audit_log_as_csv(client, tree, people):
    client.force_login(people["owner"])
    response = client.get(page_url("portal:audit-log-export", tree["acme"]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="audit-acme.csv"'
    rows = _csv_rows(response)
    assert rows[0][:6] == [
        "created_at",
        "organization_id",
        "actor_kind",
        "actor_label",
        "source",
        "action",
    ]
    assert [(row[1], row[3], row[5]) for row in rows[1:]] == [
        (str(tree["acme"].pk), "system", "organization.create")
    ]


def test_it_filters_the_audit_log(client, tree, people):
    client.force_login(people["owner"])
    url = page_url("portal:audit-log", tree["acme"])
    response = client.get(url, {"action": "organization."})
    assert [entry.action for entry in response.context["entries"]] == ["organization.create"]
    response = client.get(url, {"action": "membership."})
    assert response.context["entries"] == []


def test_it_rejects_an_inverted_audit_date_range(client, tree, people):
    client.force_login(people["owner"])
    url = page_url("portal:audit-log", tree["acme"])
    response = client.get(url, {"since": "2030-01-02", "until": "2030-01-01"})
    assert response.status_code == 400
    assert response.context["form"].errors == {"until": ["Must be on or after the start date."]}


def test_it_pages_the_audit_log_by_keyset(client, tree, people):
    from apps.core.audit import record
    from tests.factories import actor

    owner_actor = actor(people["owner"])
    for index in range(55):
        record(
            actor=owner_actor,
            action="test.step",
            organization_id=tree["acme"].pk,
            object_type="test",
            object_id=str(index),
            object_repr=f"step {index}",
        )
    client.force_login(people["owner"])
    url = page_url("portal:audit-log", tree["acme"])
    first = client.get(url, {"action": "test."})
    reprs = [entry.object_repr for entry in first.context["entries"]]
    assert reprs == [f"step {index}" for index in range(54, 4, -1)]
    older_url = first.context["older_url"]
    second = client.get(older_url, headers={"HX-Request": "true"})
    assert second.templates[0].name == "portal/partials/audit_rows.html"
    assert [entry.object_repr for entry in second.context["entries"]] == [
        f"step {index}" for index in range(4, -1, -1)
    ]
    assert second.context["older_url"] == ""
    assert AuditLog.objects.filter(action="test.step").count() == 55
