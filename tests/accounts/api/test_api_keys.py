from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts import services, tokens
from apps.accounts.models import APIKey
from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from tests.authz import Call, Case, assert_authz_matrix, error, iso, last_audit
from tests.factories import make_member

pytestmark = pytest.mark.django_db

URL = "/api/v1/api-keys/"
MANAGERS = {Role.OWNER, Role.ADMIN}


def api_key_json(api_key: APIKey) -> dict[str, Any]:
    api_key.refresh_from_db()
    creator = api_key.created_by
    return {
        "id": str(api_key.pk),
        "organization": str(api_key.organization_id),
        "name": api_key.name,
        "role": api_key.role,
        "permissions": api_key.permissions,
        "prefix": api_key.prefix,
        "created_by": (
            {"id": str(creator.pk), "email": creator.email, "full_name": creator.full_name}
            if creator
            else None
        ),
        "expires_at": iso(api_key.expires_at),
        "revoked_at": iso(api_key.revoked_at),
        "last_used_at": iso(api_key.last_used_at),
        "is_usable": api_key.is_usable,
        "created_at": iso(api_key.created_at),
    }


def retail_key(world) -> APIKey:
    return services.api_key_create(
        actor=SYSTEM, organization=world.tree["retail"], name="ERP sync", role="operator"
    ).api_key


def keys_state(attempt) -> list[tuple[Any, ...]]:
    return list(APIKey.objects.order_by("id").values_list("id", "revoked_at", "name"))


def key_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def issue(organization, role: str = "owner", **extra: Any) -> tuple[APIKey, str]:
    issued = services.api_key_create(
        actor=SYSTEM, organization=organization, name=f"{role} key", role=role, **extra
    )
    return issued.api_key, issued.token


# --- the matrix --------------------------------------------------------------------------------


def test_list_matrix(authz_world):
    def expect(attempt, response):
        assert response.json()["results"] == [api_key_json(attempt.target)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="apikey.view",
            allowed=MANAGERS,
            setup=retail_key,
            request=lambda a: Call("get", URL, {"organization": str(a.target.organization_id)}),
            expect=expect,
            listing=True,
        ),
    )


def test_retrieve_matrix_never_shows_the_token(authz_world):
    def expect(attempt, response):
        assert response.json() == api_key_json(attempt.target)
        assert "token" not in response.json()

    assert_authz_matrix(
        authz_world,
        Case(
            permission="apikey.view",
            allowed=MANAGERS,
            setup=retail_key,
            request=lambda a: Call("get", f"{URL}{a.target.pk}/"),
            expect=expect,
        ),
    )


def test_create_matrix_shows_the_token_once(authz_world):
    retail = authz_world.tree["retail"]

    def expect(attempt, response):
        api_key = APIKey.objects.get(name="Billing export")
        body = response.json()
        token = body.pop("token")
        assert body == api_key_json(api_key)
        assert token.startswith(f"fo_api_{api_key.prefix}_")
        assert api_key.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert (api_key.role, api_key.permissions, api_key.created_by) == (
            "viewer",
            ["device.view", "organization.view"],
            attempt.principal.user,
        )
        assert last_audit("apikey.create").actor_label == attempt.principal.label

    assert_authz_matrix(
        authz_world,
        Case(
            permission="apikey.add",
            allowed=MANAGERS,
            request=lambda a: Call(
                "post",
                URL,
                {
                    "organization": str(retail.pk),
                    "name": "Billing export",
                    "role": "viewer",
                    "permissions": ["organization.view", "device.view"],
                },
            ),
            status=201,
            state=keys_state,
            expect=expect,
        ),
    )


def test_revoke_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == api_key_json(attempt.target)
        assert attempt.target.revoked_at is not None
        assert last_audit("apikey.revoke").object_id == str(attempt.target.pk)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="apikey.delete",
            allowed=MANAGERS,
            setup=retail_key,
            request=lambda a: Call("post", f"{URL}{a.target.pk}/revoke/"),
            state=keys_state,
            expect=expect,
        ),
    )


def test_delete_matrix_revokes_and_keeps_the_row(authz_world):
    def expect(attempt, response):
        attempt.target.refresh_from_db()
        assert attempt.target.revoked_at is not None
        assert last_audit("apikey.revoke").object_id == str(attempt.target.pk)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="apikey.delete",
            allowed=MANAGERS,
            setup=retail_key,
            request=lambda a: Call("delete", f"{URL}{a.target.pk}/"),
            status=204,
            state=keys_state,
            expect=expect,
        ),
    )


# --- the credential itself ---------------------------------------------------------------------


def test_only_a_hash_of_the_token_is_stored(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    client = APIClient()
    client.force_login(owner)
    response = client.post(
        URL, {"organization": str(tree["acme"].pk), "name": "CI", "role": "viewer"}, format="json"
    )
    token = response.json()["token"]
    row = APIKey.objects.filter(pk=response.json()["id"]).values().get()
    assert all(token not in str(value) for value in row.values())
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()


def test_the_token_is_compared_in_constant_time(tree, monkeypatch):
    api_key, token = issue(tree["acme"])
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    response = key_client(token).get("/api/v1/organizations/", {"slug": tree["acme"].slug})
    assert response.status_code == 200
    assert calls == [(tokens.hash_token(token), api_key.token_hash)]


def test_the_x_api_key_header_works_too(tree):
    _, token = issue(tree["acme"])
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=token)
    assert client.get("/api/v1/organizations/").status_code == 200


@pytest.mark.parametrize("parameter", ["api_key", "token", "key"])
def test_it_refuses_a_token_in_the_query_string(tree, parameter):
    _, token = issue(tree["acme"])
    anonymous = APIClient().get("/api/v1/organizations/", {parameter: token})
    with_header = key_client(token).get("/api/v1/organizations/", {parameter: token})
    for response in (anonymous, with_header):
        assert response.status_code == 401
        assert error(response)["message"] == (
            "API keys are accepted only in the Authorization or X-API-Key header."
        )


def test_a_revoked_key_is_refused_with_401(tree):
    api_key, token = issue(tree["acme"])
    services.api_key_revoke(actor=SYSTEM, api_key=api_key)
    response = key_client(token).get("/api/v1/organizations/")
    assert response.status_code == 401
    assert error(response) == {
        "status": 401,
        "code": "authentication_failed",
        "message": "The API key is invalid, expired or revoked.",
        "request_id": response["X-Request-ID"],
    }


def test_an_expired_key_is_refused_with_401(tree):
    api_key, token = issue(tree["acme"])
    APIKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert key_client(token).get("/api/v1/organizations/").status_code == 401


def test_a_tampered_token_is_refused_with_401(tree):
    _, token = issue(tree["acme"])
    assert key_client(token[:-2] + "xx").get("/api/v1/organizations/").status_code == 401


def test_a_narrowed_key_holds_only_its_listed_permissions(tree):
    _, token = issue(
        tree["acme"], role="admin", permissions=["organization.view", "membership.view"]
    )
    client = key_client(token)
    listed = client.get("/api/v1/memberships/")
    created = client.post(
        "/api/v1/memberships/",
        {"organization": str(tree["acme"].pk), "email": "x@example.com", "role": "viewer"},
        format="json",
    )
    keys = client.get(URL)
    assert (listed.status_code, created.status_code, keys.status_code) == (200, 403, 403)


def test_it_refuses_to_narrow_a_key_to_permissions_outside_its_role(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    client = APIClient()
    client.force_login(owner)
    response = client.post(
        URL,
        {
            "organization": str(tree["acme"].pk),
            "name": "CI",
            "role": "viewer",
            "permissions": ["membership.delete"],
        },
        format="json",
    )
    assert response.status_code == 400
    assert error(response)["fields"] == {
        "permissions": ["Not part of the viewer role: membership.delete."]
    }
    assert APIKey.objects.count() == 0


def test_last_used_at_is_written_at_most_once_a_minute(tree):
    api_key, token = issue(tree["acme"])
    client = key_client(token)
    client.get("/api/v1/organizations/")
    api_key.refresh_from_db()
    first = api_key.last_used_at
    assert first is not None
    client.get("/api/v1/organizations/")
    api_key.refresh_from_db()
    assert api_key.last_used_at == first
    APIKey.objects.filter(pk=api_key.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get("/api/v1/organizations/")
    api_key.refresh_from_db()
    assert api_key.last_used_at > first


def test_a_key_revoked_through_the_api_stops_working(tree):
    _, admin_token = issue(tree["acme"], role="admin")
    victim, victim_token = issue(tree["retail"], role="viewer")
    assert key_client(admin_token).delete(f"{URL}{victim.pk}/").status_code == 204
    assert key_client(victim_token).get("/api/v1/organizations/").status_code == 401
