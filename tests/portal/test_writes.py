"""Portal writes: members, invitations and API keys go through services with the actor;
bad input writes nothing; lookups by id are scoped (404) and permission-checked (403)."""

from __future__ import annotations

import pytest
from django.core import mail
from django.urls import reverse

from apps.accounts import services
from apps.accounts.models import APIKey, Invitation, Membership, User
from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog


def membership_of(user: User, organization) -> Membership:
    return Membership.objects.get(user=user, organization=organization)


# --- members -----------------------------------------------------------------------------------


def test_it_changes_a_member_role(client, tree, people):
    membership = membership_of(people["viewer"], tree["acme"])
    client.force_login(people["owner"])
    url = reverse("portal:membership-change-role", args=[membership.pk])
    response = client.post(url, {"role": Role.OPERATOR})
    assert response.status_code == 302
    assert response.url == reverse("portal:members", args=[tree["acme"].pk])
    membership.refresh_from_db()
    assert membership.role == Role.OPERATOR
    entry = AuditLog.objects.get(action="membership.update")
    assert (entry.actor_label, entry.source, entry.changes) == (
        "owner@acme.test",
        "portal",
        {"role": ["viewer", "operator"]},
    )


def test_it_refuses_an_unknown_role_and_writes_nothing(client, tree, people):
    membership = membership_of(people["viewer"], tree["acme"])
    client.force_login(people["owner"])
    url = reverse("portal:membership-change-role", args=[membership.pk])
    response = client.post(url, {"role": "wizard"})
    assert response.status_code == 400
    assert response.context["error"] == (
        "Role for viewer@acme.test: Select a valid choice. wizard is not one of the available "
        "choices."
    )
    membership.refresh_from_db()
    assert membership.role == Role.VIEWER
    assert AuditLog.objects.filter(action__startswith="membership.").count() == 0


def test_it_refuses_to_demote_the_last_owner(client, tree, people):
    membership = membership_of(people["owner"], tree["acme"])
    client.force_login(people["owner"])
    url = reverse("portal:membership-change-role", args=[membership.pk])
    response = client.post(url, {"role": Role.VIEWER})
    assert response.status_code == 400
    assert response.context["error"] == (
        "Role for owner@acme.test: An organization must keep at least one owner."
    )
    membership.refresh_from_db()
    assert membership.role == Role.OWNER


def test_it_refuses_an_admin_granting_owner(client, tree, people):
    membership = membership_of(people["viewer"], tree["acme"])
    client.force_login(people["admin"])
    url = reverse("portal:membership-change-role", args=[membership.pk])
    response = client.post(url, {"role": Role.OWNER})
    assert response.status_code == 400
    membership.refresh_from_db()
    assert membership.role == Role.VIEWER


@pytest.mark.parametrize("action", ["membership-change-role", "membership-remove"])
def test_it_hides_a_sibling_membership_with_404(client, tree, people, action):
    membership = membership_of(people["viewer"], tree["acme"])
    client.force_login(people["stranger"])
    response = client.post(reverse(f"portal:{action}", args=[membership.pk]), {"role": "admin"})
    assert response.status_code == 404
    membership.refresh_from_db()
    assert membership.role == Role.VIEWER


@pytest.mark.parametrize("action", ["membership-change-role", "membership-remove"])
def test_it_refuses_a_member_without_the_permission_with_403(client, tree, people, action):
    membership = membership_of(people["viewer"], tree["acme"])
    client.force_login(people["approver"])
    response = client.post(reverse(f"portal:{action}", args=[membership.pk]), {"role": "admin"})
    assert response.status_code == 403
    membership.refresh_from_db()
    assert membership.role == Role.VIEWER


def test_it_removes_a_member(client, tree, people):
    membership = membership_of(people["viewer"], tree["acme"])
    client.force_login(people["owner"])
    response = client.post(reverse("portal:membership-remove", args=[membership.pk]))
    assert response.status_code == 302
    assert Membership.objects.filter(pk=membership.pk).exists() is False
    entry = AuditLog.objects.get(action="membership.delete")
    assert entry.changes == {"user": ["viewer@acme.test", None], "role": ["viewer", None]}


def test_it_lists_members_with_their_roles(client, tree, people):
    client.force_login(people["approver"])
    response = client.get(reverse("portal:members", args=[tree["acme"].pk]))
    assert [(m.user.email, m.role) for m in response.context["memberships"]] == [
        ("admin@acme.test", "admin"),
        ("approver@acme.test", "approver"),
        ("billing@acme.test", "billing"),
        ("owner@acme.test", "owner"),
        ("viewer@acme.test", "viewer"),
    ]
    assert (response.context["can_change"], response.context["can_delete"]) == (False, False)


# --- invitations -------------------------------------------------------------------------------


def test_it_invites_a_member_by_email(client, tree, people, django_capture_on_commit_callbacks):
    client.force_login(people["owner"])
    url = reverse("portal:invitations", args=[tree["acme"].pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"email": "New.Person@Example.com", "role": Role.OPERATOR})
    assert response.status_code == 302
    invitation = Invitation.objects.get()
    assert (invitation.email, invitation.role, invitation.invited_by, invitation.status) == (
        "new.person@example.com",
        "operator",
        people["owner"],
        "pending",
    )
    assert [message.to for message in mail.outbox] == [["new.person@example.com"]]
    listing = client.get(url)
    assert [(i.email, i.status) for i in listing.context["invitations"]] == [
        ("new.person@example.com", "pending")
    ]


def test_it_refuses_a_bad_invitation_and_writes_nothing(client, tree, people):
    client.force_login(people["owner"])
    url = reverse("portal:invitations", args=[tree["acme"].pk])
    response = client.post(url, {"email": "not-an-email", "role": "wizard"})
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "email": ["Enter a valid email address."],
        "role": ["Select a valid choice. wizard is not one of the available choices."],
    }
    response = client.post(url, {"email": "viewer@acme.test", "role": "viewer"})
    assert response.status_code == 400
    assert response.context["form"].errors == {"email": ["This person is already a member."]}
    assert Invitation.objects.count() == 0


def test_it_revokes_an_invitation(client, tree, people):
    issued = services.invitation_create(
        actor=SYSTEM,
        organization=tree["acme"],
        email="x@example.com",
        role="viewer",
        invited_by=None,
    )
    client.force_login(people["admin"])
    response = client.post(reverse("portal:invitation-revoke", args=[issued.invitation.pk]))
    assert response.status_code == 302
    issued.invitation.refresh_from_db()
    assert issued.invitation.status == "revoked"


def test_it_scopes_invitation_revocation(client, tree, people):
    issued = services.invitation_create(
        actor=SYSTEM,
        organization=tree["acme"],
        email="x@example.com",
        role="viewer",
        invited_by=None,
    )
    url = reverse("portal:invitation-revoke", args=[issued.invitation.pk])
    client.force_login(people["stranger"])
    assert client.post(url).status_code == 404
    client.force_login(people["viewer"])
    assert client.post(url).status_code == 404  # viewers cannot see invitations at all
    issued.invitation.refresh_from_db()
    assert issued.invitation.status == "pending"


def test_it_sends_an_anonymous_invitee_to_sign_up_and_back(client, tree, people):
    issued = services.invitation_create(
        actor=SYSTEM,
        organization=tree["retail"],
        email="fresh@example.com",
        role="viewer",
        invited_by=people["owner"],
    )
    accept_url = reverse("portal:invitation-accept", args=[issued.token])
    response = client.get(accept_url)
    assert response.status_code == 302
    assert response.url == f"/accounts/signup/?next={accept_url.replace('/', '%2F')}"
    response = client.post(
        f"/accounts/signup/?next={accept_url}",
        {
            "email": "fresh@example.com",
            "password1": "x9!Plenty-long",
            "password2": "x9!Plenty-long",
            "next": accept_url,
        },
    )
    assert response.status_code == 302
    assert response.url == accept_url
    response = client.post(accept_url)
    assert response.status_code == 302
    assert response.url == reverse("portal:dashboard", args=[tree["retail"].pk])
    user = User.objects.get(email="fresh@example.com")
    assert membership_of(user, tree["retail"]).role == "viewer"
    issued.invitation.refresh_from_db()
    assert (issued.invitation.status, issued.invitation.accepted_by) == ("accepted", user)


def test_it_sends_an_anonymous_invitee_with_an_account_to_login(client, tree, people):
    issued = services.invitation_create(
        actor=SYSTEM,
        organization=tree["retail"],
        email="viewer@acme.test",
        role="operator",
        invited_by=None,
    )
    accept_url = reverse("portal:invitation-accept", args=[issued.token])
    response = client.get(accept_url)
    assert response.url == f"/accounts/login/?next={accept_url.replace('/', '%2F')}"


def test_it_refuses_an_invitation_for_another_email(client, tree, people):
    issued = services.invitation_create(
        actor=SYSTEM,
        organization=tree["retail"],
        email="someone@example.com",
        role="viewer",
        invited_by=None,
    )
    client.force_login(people["viewer"])
    accept_url = reverse("portal:invitation-accept", args=[issued.token])
    assert client.get(accept_url).context["wrong_user"] is True
    response = client.post(accept_url)
    assert response.status_code == 400
    assert response.context["error"] == "This invitation was sent to another email address."
    assert Membership.objects.filter(organization=tree["retail"]).count() == 0


def test_it_refuses_an_unknown_invitation_token(client, db):
    response = client.get(reverse("portal:invitation-accept", args=["fo_inv_nope"]))
    assert response.status_code == 404
    assert response.context["problem"] == "invalid"


# --- API keys ----------------------------------------------------------------------------------


def test_it_shows_a_new_api_key_exactly_once(client, tree, people):
    client.force_login(people["owner"])
    url = reverse("portal:api-keys", args=[tree["acme"].pk])
    response = client.post(url, {"name": "ERP sync", "role": Role.VIEWER})
    api_key = APIKey.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("portal:api-key-created", args=[api_key.pk])
    shown = client.get(response.url)
    token = shown.context["token"]
    assert services.api_key_authenticate(token) == api_key
    assert token in shown.content.decode()
    assert shown["Cache-Control"] == "no-store"
    again = client.get(response.url)
    assert again.context["token"] is None
    assert token not in again.content.decode()
    listing = client.get(url)
    assert [(k.name, k.prefix, k.role) for k in listing.context["api_keys"]] == [
        ("ERP sync", api_key.prefix, "viewer")
    ]


def test_it_refuses_a_bad_api_key_and_writes_nothing(client, tree, people):
    client.force_login(people["admin"])
    url = reverse("portal:api-keys", args=[tree["acme"].pk])
    response = client.post(url, {"name": "  ", "role": Role.OWNER, "expires_on": "2000-01-01"})
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "name": ["This field is required."],
        "role": ["Select a valid choice. owner is not one of the available choices."],
        "expires_on": ["Must be in the future."],
    }
    assert APIKey.objects.count() == 0


def test_it_revokes_an_api_key(client, tree, people):
    issued = services.api_key_create(
        actor=SYSTEM, organization=tree["acme"], name="old", role="viewer"
    )
    client.force_login(people["owner"])
    response = client.post(reverse("portal:api-key-revoke", args=[issued.api_key.pk]))
    assert response.status_code == 302
    issued.api_key.refresh_from_db()
    assert issued.api_key.is_usable is False


@pytest.mark.parametrize(("who", "status"), [("stranger", 404), ("viewer", 404)])
def test_it_scopes_api_key_pages(client, tree, people, who, status):
    issued = services.api_key_create(
        actor=SYSTEM, organization=tree["acme"], name="old", role="viewer"
    )
    client.force_login(people[who])
    assert client.post(reverse("portal:api-key-revoke", args=[issued.api_key.pk])).status_code == (
        status
    )
    assert client.get(reverse("portal:api-key-created", args=[issued.api_key.pk])).status_code == (
        status
    )
    issued.api_key.refresh_from_db()
    assert issued.api_key.revoked_at is None
