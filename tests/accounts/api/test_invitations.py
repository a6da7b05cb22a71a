from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from rest_framework.test import APIClient

from apps.accounts import services
from apps.accounts.models import Invitation, Membership
from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from tests.authz import Call, Case, assert_authz_matrix, error, iso, last_audit
from tests.factories import UserFactory, make_member

pytestmark = pytest.mark.django_db

URL = "/api/v1/invitations/"
ACCEPT = "/api/v1/invitations/accept/"
MANAGERS = {Role.OWNER, Role.ADMIN}


def invitation_json(invitation: Invitation) -> dict[str, Any]:
    invitation.refresh_from_db()
    inviter = invitation.invited_by
    return {
        "id": str(invitation.pk),
        "organization": str(invitation.organization_id),
        "email": invitation.email,
        "role": invitation.role,
        "status": invitation.status,
        "invited_by": (
            {"id": str(inviter.pk), "email": inviter.email, "full_name": inviter.full_name}
            if inviter
            else None
        ),
        "expires_at": iso(invitation.expires_at),
        "accepted_at": iso(invitation.accepted_at),
        "revoked_at": iso(invitation.revoked_at),
        "created_at": iso(invitation.created_at),
    }


def pending_invitation(world) -> Invitation:
    return services.invitation_create(
        actor=SYSTEM,
        organization=world.tree["retail"],
        email="guest@example.com",
        role="viewer",
        invited_by=None,
    ).invitation


def invitations_state(attempt) -> list[tuple[Any, ...]]:
    return list(Invitation.objects.order_by("id").values_list("id", "email", "revoked_at"))


def session_client(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


# --- the matrix --------------------------------------------------------------------------------


def test_list_matrix(authz_world):
    def expect(attempt, response):
        assert response.json()["results"] == [invitation_json(attempt.target)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="invitation.view",
            allowed=MANAGERS,
            setup=pending_invitation,
            request=lambda a: Call("get", URL, {"organization": str(a.target.organization_id)}),
            expect=expect,
            listing=True,
        ),
    )


def test_retrieve_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == invitation_json(attempt.target)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="invitation.view",
            allowed=MANAGERS,
            setup=pending_invitation,
            request=lambda a: Call("get", f"{URL}{a.target.pk}/"),
            expect=expect,
        ),
    )


def test_create_matrix(authz_world):
    retail = authz_world.tree["retail"]

    def expect(attempt, response):
        invitation = Invitation.objects.get(email="newcomer@example.com")
        body = response.json()
        assert body == invitation_json(invitation)
        assert "token" not in body
        assert (invitation.organization_id, invitation.role, invitation.invited_by) == (
            retail.pk,
            "operator",
            attempt.principal.user,
        )
        assert last_audit("invitation.create").actor_label == attempt.principal.label

    assert_authz_matrix(
        authz_world,
        Case(
            permission="invitation.add",
            allowed=MANAGERS,
            request=lambda a: Call(
                "post",
                URL,
                {
                    "organization": str(retail.pk),
                    "email": "newcomer@example.com",
                    "role": "operator",
                },
            ),
            status=201,
            state=invitations_state,
            expect=expect,
        ),
    )


def test_revoke_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == invitation_json(attempt.target)
        assert attempt.target.status == "revoked"
        assert last_audit("invitation.revoke").object_id == str(attempt.target.pk)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="invitation.delete",
            allowed=MANAGERS,
            setup=pending_invitation,
            request=lambda a: Call("post", f"{URL}{a.target.pk}/revoke/"),
            state=invitations_state,
            expect=expect,
        ),
    )


# --- accepting ---------------------------------------------------------------------------------


def test_the_emailed_token_is_never_in_a_response_and_lets_the_invitee_join(
    tree, django_capture_on_commit_callbacks
):
    owner = make_member(tree["acme"], Role.OWNER)
    with django_capture_on_commit_callbacks(execute=True):
        created = session_client(owner).post(
            URL,
            {
                "organization": str(tree["retail"].pk),
                "email": "guest@example.com",
                "role": "viewer",
            },
            format="json",
        )
    assert created.status_code == 201
    [message] = mail.outbox
    token = re.search(r"/invitations/(fo_inv_[^/]+)/accept/", message.body).group(1)
    assert token not in created.content.decode()
    assert Invitation.objects.filter(token_hash=token).count() == 0  # only its hash is stored

    guest = UserFactory(email="guest@example.com")
    accepted = session_client(guest).post(ACCEPT, {"token": token}, format="json")
    membership = Membership.objects.get(user=guest)
    assert accepted.status_code == 200
    assert accepted.json()["id"] == str(membership.pk)
    assert (membership.organization_id, membership.role) == (tree["retail"].pk, "viewer")
    assert Invitation.objects.get(email="guest@example.com").status == "accepted"


def test_it_refuses_an_invitation_sent_to_someone_else(tree):
    issued = services.invitation_create(
        actor=SYSTEM,
        organization=tree["retail"],
        email="a@example.com",
        role="viewer",
        invited_by=None,
    )
    intruder = UserFactory(email="b@example.com")
    response = session_client(intruder).post(ACCEPT, {"token": issued.token}, format="json")
    assert response.status_code == 400
    assert error(response)["fields"] == {
        "token": ["This invitation was sent to another email address."]
    }
    assert Membership.objects.filter(user=intruder).count() == 0


def test_accepting_needs_a_signed_in_person_not_an_api_key(tree, authz_world):
    issued = services.invitation_create(
        actor=SYSTEM,
        organization=tree["retail"],
        email="a@example.com",
        role="viewer",
        invited_by=None,
    )
    principal = authz_world.members[Role.OWNER]
    anonymous = APIClient().post(ACCEPT, {"token": issued.token}, format="json")
    as_member = principal.client.post(ACCEPT, {"token": issued.token}, format="json")
    assert anonymous.status_code == 401
    # a session of the wrong person is a 400; an API key is not a person at all: 403
    assert as_member.status_code == (400 if authz_world.kind == "session" else 403)
    assert Invitation.objects.get(pk=issued.invitation.pk).status == "pending"


def test_it_refuses_to_revoke_an_accepted_invitation(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    invitation = Invitation.objects.create(
        organization=tree["retail"],
        email="done@example.com",
        role="viewer",
        token_hash="0" * 64,
        expires_at="2999-01-01T00:00:00Z",
        accepted_at="2024-01-01T00:00:00Z",
    )
    response = session_client(owner).post(f"{URL}{invitation.pk}/revoke/")
    assert response.status_code == 400
    assert error(response)["fields"] == {
        "status": ["Only a pending invitation can be revoked (this one is accepted)."]
    }
