"""The OpenAPI schema renders and validates with no warnings; the docs pages serve."""

from __future__ import annotations

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_the_schema_validates_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    assert set(schema["paths"]) >= {
        "/api/v1/api-keys/",
        "/api/v1/api-keys/{id}/",
        "/api/v1/api-keys/{id}/revoke/",
        "/api/v1/audit-log/",
        "/api/v1/audit-log/{id}/",
        "/api/v1/audit-log/export/",
        "/api/v1/events/",
        "/api/v1/events/{id}/",
        "/api/v1/events/{id}/redeliver/",
        "/api/v1/invitations/",
        "/api/v1/invitations/{id}/",
        "/api/v1/invitations/{id}/revoke/",
        "/api/v1/invitations/accept/",
        "/api/v1/memberships/",
        "/api/v1/memberships/{id}/",
        "/api/v1/organizations/",
        "/api/v1/organizations/{id}/",
        "/api/v1/organizations/{id}/move/",
    }
    assert set(schema["components"]["securitySchemes"]) == {"apiKey", "session"}


def test_the_api_key_create_response_documents_the_one_time_token(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    created = schema["components"]["schemas"]["APIKeyCreated"]["properties"]
    listed = schema["components"]["schemas"]["APIKey"]["properties"]
    assert ("token" in created, "token" in listed) == (True, False)


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_the_schema_and_docs_pages_respond(path):
    client = APIClient()
    client.force_login(UserFactory())
    response = client.get(path)
    assert response.status_code == 200
