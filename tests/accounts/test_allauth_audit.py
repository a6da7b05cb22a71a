from __future__ import annotations

import pytest

from apps.core.models import AuditLog

from ..factories import UserFactory

pytestmark = pytest.mark.django_db


def test_a_password_change_in_the_portal_leaves_an_audit_row(client):
    user = UserFactory(email="pat@example.com")
    client.force_login(user)
    response = client.post(
        "/accounts/password/change/",
        {
            "oldpassword": "correct horse battery",
            "password1": "a new Secret 42!",
            "password2": "a new Secret 42!",
        },
    )
    assert response.status_code == 302
    row = AuditLog.objects.get(action="user.password_change")
    assert (row.actor_kind, row.actor_user_id, row.source) == ("user", user.pk, "portal")
    assert (row.object_type, row.object_id) == ("accounts.user", str(user.pk))
    assert row.changes == {"password": ["(set)", "(set)"]}


def test_an_open_signup_leaves_an_audit_row(client, settings):
    settings.ACCOUNT_OPEN_SIGNUP = True
    response = client.post(
        "/accounts/signup/",
        {
            "email": "new@example.com",
            "password1": "a new Secret 42!",
            "password2": "a new Secret 42!",
        },
    )
    assert response.status_code == 302
    row = AuditLog.objects.get(action="user.signup")
    assert row.actor_label == "new@example.com"
    assert row.changes == {"email": [None, "new@example.com"]}


def test_signup_is_closed_without_an_invitation(client):
    response = client.post(
        "/accounts/signup/",
        {
            "email": "new@example.com",
            "password1": "a new Secret 42!",
            "password2": "a new Secret 42!",
        },
    )
    assert response.status_code == 200
    assert b"We are sorry, but the sign up is currently closed." in response.content
    assert not AuditLog.objects.filter(action="user.signup").exists()
