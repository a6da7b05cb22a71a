"""allauth's email verification and password reset, as a person goes through them."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.core import mail

from apps.accounts.roles import Role
from tests.factories import make_member

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"


def link_in(message: mail.EmailMessage) -> str:
    found = re.search(r"https?://[^/\s]+(/\S+)", message.body)
    assert found is not None, message.body
    return found.group(1)


def test_an_unverified_address_must_be_confirmed_before_sign_in(client, tree):
    user = make_member(tree["acme"], Role.VIEWER, email="unverified@acme.test")
    response = client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    assert response.status_code == 302
    assert response.url == "/accounts/confirm-email/"
    assert "_auth_user_id" not in client.session
    assert [message.to for message in mail.outbox] == [["unverified@acme.test"]]

    confirm = link_in(mail.outbox[0])
    assert client.get(confirm).status_code == 200
    assert client.post(confirm).status_code == 302
    assert EmailAddress.objects.get(email=user.email).verified is True

    response = client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_a_forgotten_password_is_reset_through_the_emailed_link(client, tree):
    user = make_member(tree["acme"], Role.VIEWER, email="forgetful@acme.test")
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    response = client.post("/accounts/password/reset/", {"email": user.email})
    assert response.status_code == 302
    assert [message.to for message in mail.outbox] == [["forgetful@acme.test"]]

    response = client.get(link_in(mail.outbox[0]))
    assert response.status_code == 302  # allauth hides the key behind a session redirect
    form_url = response.url
    new_password = "a brand new Secret 7"
    response = client.post(form_url, {"password1": new_password, "password2": new_password})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password(new_password) is True
    assert user.check_password(PASSWORD) is False


def test_a_password_reset_for_an_unknown_address_reveals_nothing_and_sends_no_key(client, db):
    response = client.post("/accounts/password/reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert response.url == "/accounts/password/reset/done/"  # the same answer as for a member
    assert [message.to for message in mail.outbox] == [["nobody@example.com"]]
    assert "/password/reset/key/" not in mail.outbox[0].body
