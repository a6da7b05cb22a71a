"""The accounts admin: allauth sign-in (with MFA), writes through services, scoped querysets."""

from __future__ import annotations

import time

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, hotp_value
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client

from apps.accounts import services
from apps.accounts.models import APIKey, Invitation, Membership, Organization, User
from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog

from ..factories import UserFactory, make_member

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"  # tests.factories.UserFactory's
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


# --- helpers shared with test_consumers --------------------------------------------------------


def verified(user: User) -> User:
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    return user


def totp_user(organization: Organization, role: str, **extra: object) -> tuple[User, str]:
    """A member with a verified email address and a TOTP authenticator."""
    user = verified(make_member(organization, role))
    for name, value in extra.items():
        setattr(user, name, value)
    user.save()
    TOTP.activate(user, TOTP_SECRET)
    return user, TOTP_SECRET


def current_code(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def sign_in_with_totp(client: Client, user: User, secret: str, next_url: str = "") -> str:
    """Password, then the TOTP code, through allauth's views; returns the final redirect."""
    login_url = "/accounts/login/" + (f"?next={next_url}" if next_url else "")
    response = client.post(login_url, {"login": user.email, "password": PASSWORD})
    assert (response.status_code, response["Location"]) == (302, "/accounts/2fa/authenticate/")
    response = client.post("/accounts/2fa/authenticate/", {"code": current_code(secret)})
    assert response.status_code == 302
    return response["Location"]


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def superuser() -> User:
    return User.objects.create_superuser("root@fleetops.example", PASSWORD)


@pytest.fixture
def admin_client(superuser: User) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


def admin_rows(action: str) -> list[tuple[str, str, str]]:
    return list(
        AuditLog.objects.filter(action=action)
        .order_by("created_at")
        .values_list("source", "actor_label", "object_repr")
    )


def run_action(client: Client, model: str, action: str, objects: list[object]) -> list[str]:
    """Post an admin action, follow to the changelist (which shows and consumes the messages)."""
    response = client.post(
        f"/admin/accounts/{model}/",
        {"action": action, ACTION_CHECKBOX_NAME: [str(obj.pk) for obj in objects], "index": 0},
        follow=True,
    )
    assert response.redirect_chain == [(f"/admin/accounts/{model}/", 302)]
    return [str(message) for message in response.context["messages"]]


# --- sign-in through allauth -------------------------------------------------------------------


def test_the_admin_login_redirects_to_allauth(client):
    response = client.get("/admin/login/?next=/admin/")
    assert (response.status_code, response["Location"]) == (
        302,
        "/accounts/login/?next=%2Fadmin%2F",
    )


def test_an_anonymous_admin_visit_ends_on_the_allauth_login(client):
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain == [
        ("/admin/login/?next=/admin/", 302),
        ("/accounts/login/?next=%2Fadmin%2F", 302),
    ]


def test_a_signed_in_staff_user_sees_the_admin_index(admin_client):
    response = admin_client.get("/admin/")
    assert response.status_code == 200
    assert "Platform back office" in response.content.decode()


def test_it_refuses_the_admin_login_to_a_signed_in_non_staff_user(client, tree):
    client.force_login(make_member(tree["acme"], Role.OWNER))
    assert client.get("/admin/login/").status_code == 403


def test_a_staff_password_login_through_allauth_reaches_the_admin(client):
    user = verified(UserFactory(is_staff=True, is_superuser=True))
    response = client.post(
        "/accounts/login/?next=/admin/", {"login": user.email, "password": PASSWORD}
    )
    assert (response.status_code, response["Location"]) == (302, "/admin/")
    assert client.get("/admin/").status_code == 200


def test_mfa_applies_to_the_admin_login(client, tree):
    user, secret = totp_user(tree["platform"], Role.OWNER, is_staff=True, is_superuser=True)
    response = client.post(
        "/accounts/login/?next=/admin/", {"login": user.email, "password": PASSWORD}
    )
    assert (response.status_code, response["Location"]) == (302, "/accounts/2fa/authenticate/")
    assert client.get("/admin/")["Location"] == "/admin/login/?next=/admin/"  # not signed in yet
    response = client.post("/accounts/2fa/authenticate/", {"code": current_code(secret)})
    assert (response.status_code, response["Location"]) == (302, "/admin/")
    assert client.get("/admin/").status_code == 200


# --- every page renders ------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["user", "organization", "membership", "invitation", "apikey"])
def test_every_accounts_changelist_renders_for_a_superuser(admin_client, tree, model):
    assert admin_client.get(f"/admin/accounts/{model}/").status_code == 200


# --- organizations -----------------------------------------------------------------------------


def test_the_require_mfa_action_goes_through_the_service_and_is_audited(admin_client, tree):
    messages = run_action(
        admin_client, "organization", "require_mfa", [tree["acme"], tree["globex"]]
    )
    assert messages == ["Now requiring MFA: 2; unchanged: 0; not permitted: 0."]
    assert set(Organization.objects.filter(require_mfa=True).values_list("name", flat=True)) == {
        "Acme",
        "Globex",
    }
    rows = AuditLog.objects.filter(action="organization.update").order_by("object_repr")
    assert [(row.object_repr, row.source, row.actor_label, row.changes) for row in rows] == [
        ("Acme", "admin", "root@fleetops.example", {"require_mfa": [False, True]}),
        ("Globex", "admin", "root@fleetops.example", {"require_mfa": [False, True]}),
    ]


def test_the_deactivate_action_skips_inactive_organizations(admin_client, tree):
    services.organization_update(actor=SYSTEM, organization=tree["retail"], is_active=False)
    messages = run_action(
        admin_client, "organization", "deactivate", [tree["retail"], tree["store"]]
    )
    assert messages == ["Deactivated: 1; unchanged: 1; not permitted: 0."]
    assert admin_rows("organization.update")[-1] == ("admin", "root@fleetops.example", "Store 1")
    assert Organization.objects.get(pk=tree["store"].pk).is_active is False


def test_adding_an_organization_in_the_admin_uses_the_service(admin_client, tree):
    response = admin_client.post(
        "/admin/accounts/organization/add/",
        {
            "name": "Initech",
            "slug": "initech",
            "kind": "customer",
            "parent": str(tree["acme"].pk),
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    initech = Organization.objects.get(slug="initech")
    assert (initech.path, initech.depth) == (tree["acme"].path + initech.pk.hex + "/", 2)
    assert admin_rows("organization.create")[-1] == ("admin", "root@fleetops.example", "Initech")


def test_changing_the_parent_in_the_admin_moves_the_subtree(admin_client, tree):
    retail = tree["retail"]
    response = admin_client.post(
        f"/admin/accounts/organization/{retail.pk}/change/",
        {
            "name": "Retail Co",
            "slug": retail.slug,
            "kind": "customer",
            "parent": str(tree["globex"].pk),
            "is_active": "on",
            "_save": "Save",
        },
    )
    assert response.status_code == 302
    store = Organization.objects.get(pk=tree["store"].pk)
    assert store.path == tree["globex"].path + retail.pk.hex + "/" + store.pk.hex + "/"
    assert admin_rows("organization.move") == [("admin", "root@fleetops.example", "Retail Co")]
    assert admin_rows("organization.update") == []


# --- memberships -------------------------------------------------------------------------------


def test_adding_a_membership_in_the_admin_is_audited(admin_client, tree):
    user = UserFactory(email="new@example.com")
    response = admin_client.post(
        "/admin/accounts/membership/add/",
        {"user": str(user.pk), "organization": str(tree["acme"].pk), "role": "viewer"},
    )
    assert response.status_code == 302
    assert list(Membership.objects.filter(user=user).values_list("organization__name", "role")) == [
        ("Acme", "viewer")
    ]
    row = AuditLog.objects.get(action="membership.create", actor_kind="user")
    assert (row.source, row.actor_label, row.organization_id, row.changes) == (
        "admin",
        "root@fleetops.example",
        tree["acme"].pk,
        {"user": [None, "new@example.com"], "role": [None, "viewer"]},
    )


def test_changing_a_role_in_the_admin_is_audited(admin_client, tree):
    user = make_member(tree["acme"], Role.VIEWER)
    membership = Membership.objects.get(user=user)
    response = admin_client.post(
        f"/admin/accounts/membership/{membership.pk}/change/", {"role": "operator"}
    )
    assert response.status_code == 302
    assert Membership.objects.get(pk=membership.pk).role == "operator"
    row = AuditLog.objects.get(action="membership.update")
    assert (row.source, row.changes) == ("admin", {"role": ["viewer", "operator"]})


def test_deleting_a_membership_in_the_admin_is_audited(admin_client, tree):
    membership = Membership.objects.get(user=make_member(tree["acme"], Role.VIEWER))
    response = admin_client.post(
        f"/admin/accounts/membership/{membership.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert Membership.objects.filter(pk=membership.pk).exists() is False
    assert [row[0] for row in admin_rows("membership.delete")] == ["admin"]


def test_it_refuses_to_remove_the_last_owner_and_writes_nothing(admin_client, tree):
    membership = Membership.objects.get(user=make_member(tree["acme"], Role.OWNER))
    response = admin_client.post(
        f"/admin/accounts/membership/{membership.pk}/delete/", {"post": "yes"}
    )
    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "An organization must keep at least one owner."
    ]
    assert Membership.objects.filter(pk=membership.pk).exists() is True
    assert admin_rows("membership.delete") == []


def test_the_bulk_delete_action_is_replaced_by_the_service_one(admin_client, tree):
    response = admin_client.get("/admin/accounts/membership/")
    actions = [choice[0] for choice in response.context["action_form"].fields["action"].choices]
    assert actions == ["", "remove"]


# --- invitations and API keys ------------------------------------------------------------------


def test_the_revoke_invitation_action_is_audited(admin_client, tree):
    issued = services.invitation_create(
        actor=SYSTEM,
        organization=tree["acme"],
        email="guest@example.com",
        role="viewer",
        invited_by=None,
    )
    messages = run_action(admin_client, "invitation", "revoke", [issued.invitation])
    assert messages == ["Revoked: 1; unchanged: 0; not permitted: 0."]
    assert Invitation.objects.get(pk=issued.invitation.pk).status == "revoked"
    assert [row[0] for row in admin_rows("invitation.revoke")] == ["admin"]


def test_the_api_key_page_never_shows_the_hash_and_revoking_is_audited(admin_client, tree):
    issued = services.api_key_create(
        actor=SYSTEM, organization=tree["acme"], name="ERP", role="viewer"
    )
    key = issued.api_key
    page = admin_client.get(f"/admin/accounts/apikey/{key.pk}/change/").content.decode()
    assert (key.prefix in page, key.token_hash in page, issued.token in page) == (
        True,
        False,
        False,
    )
    messages = run_action(admin_client, "apikey", "revoke", [key])
    assert messages == ["Revoked: 1; unchanged: 0; not permitted: 0."]
    assert APIKey.objects.get(pk=key.pk).is_usable is False
    assert admin_rows("apikey.revoke") == [("admin", "root@fleetops.example", str(key))]


# --- users -------------------------------------------------------------------------------------


def test_creating_a_user_in_the_admin_is_audited(admin_client):
    response = admin_client.post(
        "/admin/accounts/user/add/",
        {
            "email": "Fresh@Example.com",
            "usable_password": "true",
            "password1": "a-long-unusual-passphrase-42",
            "password2": "a-long-unusual-passphrase-42",
        },
    )
    assert response.status_code == 302
    user = User.objects.get(email="fresh@example.com")
    row = AuditLog.objects.get(action="user.create")
    assert (row.source, row.object_id, row.changes) == (
        "admin",
        str(user.pk),
        {
            "email": [None, "fresh@example.com"],
            "full_name": [None, ""],
            "is_active": [None, True],
            "is_staff": [None, False],
            "is_superuser": [None, False],
            "password": [None, "(set)"],
        },
    )


def test_changing_a_password_in_the_admin_is_audited(admin_client):
    user = UserFactory()
    response = admin_client.post(
        f"/admin/accounts/user/{user.pk}/password/",
        {
            "set_usable_password": "true",
            "password1": "another-unusual-passphrase-7",
            "password2": "another-unusual-passphrase-7",
        },
    )
    assert response.status_code == 302
    assert User.objects.get(pk=user.pk).check_password("another-unusual-passphrase-7") is True
    assert admin_rows("user.password_change") == [("admin", "root@fleetops.example", user.email)]


# --- staff who are not superusers: for_actor everywhere ----------------------------------------


def staff_client(organization: Organization, role: str) -> Client:
    """A staff user (not a superuser) with ``role`` on ``organization`` and the Django
    permissions to open the organization and membership admin pages."""
    user = make_member(organization, role, email=f"{role}-staff@example.com")
    user.is_staff = True
    user.save()
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="accounts",
            codename__in=["view_organization", "change_organization", "view_membership"],
        )
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def acme_staff(tree) -> Client:
    return staff_client(tree["acme"], Role.VIEWER)


def test_staff_see_only_their_subtree_in_the_admin(acme_staff, tree):
    response = acme_staff.get("/admin/accounts/organization/")
    names = sorted(str(obj) for obj in response.context["cl"].result_list)
    assert names == ["Acme", "Hospital", "Retail Co", "Store 1"]


def test_staff_get_no_page_for_a_sibling_organization(acme_staff, tree):
    response = acme_staff.get(f"/admin/accounts/organization/{tree['globex'].pk}/change/")
    assert (response.status_code, response["Location"]) == (302, "/admin/")


def test_staff_actions_apply_only_where_the_role_allows(acme_staff, tree):
    messages = run_action(acme_staff, "organization", "require_mfa", [tree["acme"], tree["retail"]])
    assert messages == ["Now requiring MFA: 0; unchanged: 0; not permitted: 2."]
    assert Organization.objects.filter(require_mfa=True).count() == 0
    assert admin_rows("organization.update") == []


def test_staff_with_the_admin_role_require_mfa_but_may_not_deactivate(tree):
    client = staff_client(tree["acme"], Role.ADMIN)
    messages = run_action(client, "organization", "require_mfa", [tree["retail"], tree["globex"]])
    assert messages == ["Now requiring MFA: 1; unchanged: 0; not permitted: 0."]  # globex unseen
    assert admin_rows("organization.update") == [("admin", "admin-staff@example.com", "Retail Co")]
    messages = run_action(client, "organization", "deactivate", [tree["retail"]])
    assert messages == ["Deactivated: 0; unchanged: 0; not permitted: 1."]
    assert Organization.objects.get(pk=tree["retail"].pk).is_active is True
