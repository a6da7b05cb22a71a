"""One error envelope for every API error, including Django's own 404 under /api/."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.accounts.roles import Role
from tests.factories import make_member

pytestmark = pytest.mark.django_db


def signed_in(tree, role: str = Role.VIEWER) -> APIClient:
    client = APIClient()
    client.force_login(make_member(tree["acme"], role))
    return client


def envelope(response, status: int, code: str, message: str, **extra) -> dict:
    return {
        "error": {
            "status": status,
            "code": code,
            "message": message,
            **extra,
            "request_id": response["X-Request-ID"],
        }
    }


def test_401_uses_the_envelope_and_asks_for_a_bearer_token(db):
    response = APIClient().get("/api/v1/organizations/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json() == envelope(
        response, 401, "not_authenticated", "Authentication credentials were not provided."
    )


def test_403_uses_the_envelope(tree):
    response = signed_in(tree).get("/api/v1/memberships/")
    assert response.status_code == 403
    assert response.json() == envelope(
        response, 403, "permission_denied", "You do not have permission to perform this action."
    )


def test_404_for_an_unknown_and_a_malformed_id_are_identical(tree):
    client = signed_in(tree)
    unknown = client.get("/api/v1/organizations/01900000-0000-7000-8000-000000000000/")
    malformed = client.get("/api/v1/organizations/nope/")
    for response in (unknown, malformed):
        assert response.status_code == 404
        assert response.json() == envelope(response, 404, "not_found", "Not found.")


def test_405_uses_the_envelope(tree):
    response = signed_in(tree).delete(f"/api/v1/organizations/{tree['acme'].pk}/")
    assert response.status_code == 405
    assert response.json() == envelope(
        response, 405, "method_not_allowed", 'Method "DELETE" not allowed.'
    )


def test_400_carries_field_errors(tree):
    response = signed_in(tree, Role.OWNER).post(
        "/api/v1/memberships/", {"role": "emperor"}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == envelope(
        response,
        400,
        "invalid",
        "The request is invalid.",
        fields={
            "organization": ["This field is required."],
            "email": ["This field is required."],
            "role": ['"emperor" is not a valid choice.'],
        },
    )


def test_malformed_json_is_a_400_in_the_envelope(tree):
    response = signed_in(tree, Role.OWNER).generic(
        "POST", "/api/v1/memberships/", "{not json", content_type="application/json"
    )
    assert response.status_code == 400
    body = response.json()["error"]
    assert (body["status"], body["code"], "fields" in body) == (400, "parse_error", False)
    assert body["message"].startswith("JSON parse error")


@pytest.mark.parametrize("path", ["/api/v1/no-such-thing/", "/api/nothing", "/api/v2/"])
def test_the_site_level_404_under_api_uses_the_envelope(db, path):
    response = APIClient().get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == envelope(response, 404, "not_found", "Not found.")
