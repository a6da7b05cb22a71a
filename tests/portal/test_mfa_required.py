"""Organizations that require MFA: members without an authenticator app are sent to activate
one; API calls with the session get a 403 envelope."""

from __future__ import annotations

from allauth.mfa.models import Authenticator
from django.urls import reverse

from apps.accounts import services
from apps.core.actors import SYSTEM


def require_mfa(organization) -> None:
    services.organization_update(actor=SYSTEM, organization=organization, require_mfa=True)


def test_it_sends_a_member_without_totp_to_mfa_activation(client, tree, people):
    require_mfa(tree["acme"])
    client.force_login(people["viewer"])
    response = client.get(reverse("portal:dashboard", args=[tree["acme"].pk]))
    assert response.status_code == 302
    assert response.url == "/accounts/2fa/totp/activate/"
    page = client.get("/accounts/2fa/")
    assert page.status_code == 200
    assert [str(m) for m in page.context["messages"]] == [
        "Your organization requires two-factor authentication. "
        "Activate an authenticator app to continue."
    ]


def test_it_refuses_api_calls_from_a_member_without_totp(client, tree, people):
    require_mfa(tree["acme"])
    client.force_login(people["viewer"])
    response = client.get("/api/v1/")
    assert response.status_code == 403
    body = response.json()
    assert body["error"]["status"] == 403
    assert body["error"]["code"] == "mfa_required"


def test_it_lets_a_member_with_totp_in(client, tree, people):
    require_mfa(tree["acme"])
    Authenticator.objects.create(
        user=people["viewer"], type=Authenticator.Type.TOTP, data={"secret": "unused"}
    )
    client.force_login(people["viewer"])
    response = client.get(reverse("portal:dashboard", args=[tree["acme"].pk]))
    assert response.status_code == 200


def test_it_requires_nothing_when_a_sibling_requires_mfa(client, tree, people):
    require_mfa(tree["globex"])
    client.force_login(people["viewer"])
    response = client.get(reverse("portal:dashboard", args=[tree["acme"].pk]))
    assert response.status_code == 200


def test_it_lets_sign_out_through(client, tree, people):
    require_mfa(tree["acme"])
    client.force_login(people["viewer"])
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert response.url == "/accounts/login/"
