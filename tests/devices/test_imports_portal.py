"""The portal's import pages: who sees them, who may upload, and what a refused file shows."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.roles import Role
from apps.core.models import AuditLog, Job
from apps.devices import imports
from tests.factories import actor, make_member

from .test_imports_support import csv_text, make_catalog, upload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def client_for(organization, role: str) -> Client:
    client = Client()
    client.force_login(make_member(organization, role))
    return client


def list_url(organization) -> str:
    return f"/o/{organization.pk}/imports/"


def test_an_operator_uploads_and_lands_on_the_jobs_page(tree):
    make_catalog(tree)
    client = client_for(tree["acme"], Role.OPERATOR)
    page = client.get(list_url(tree["acme"]))
    assert page.status_code == 200
    assert b'id="import-form"' in page.content

    response = client.post(list_url(tree["acme"]), {"file": upload(csv_text(["P-1,plain"]))})

    job = Job.objects.get(kind=imports.KIND)
    assert (response.status_code, response["Location"]) == (302, f"/imports/{job.pk}/")
    assert (job.organization_id, job.params["file_name"]) == (tree["acme"].pk, "devices.csv")
    detail = client.get(f"/imports/{job.pk}/")
    assert detail.status_code == 200
    assert f'data-api="/api/v1/device-imports/{job.pk}/"'.encode() in detail.content


def test_a_viewer_sees_the_imports_but_may_not_upload(tree):
    client = client_for(tree["acme"], Role.VIEWER)
    page = client.get(list_url(tree["acme"]))
    refused = client.post(list_url(tree["acme"]), {"file": upload("serial\nX\n")})

    assert page.status_code == 200
    assert b'id="import-form"' not in page.content
    assert refused.status_code == 403
    assert Job.objects.count() == 0


def test_another_organizations_imports_are_not_found(tree):
    job = imports.import_start(
        actor=actor(make_member(tree["acme"], Role.OWNER)),
        organization=tree["acme"],
        upload=upload("serial\nX\n"),
    )
    client = client_for(tree["globex"], Role.OWNER)

    assert client.get(list_url(tree["acme"])).status_code == 404
    assert client.get(f"/imports/{job.pk}/").status_code == 404
    assert client.post(list_url(tree["acme"]), {"file": upload("serial\nX\n")}).status_code == 404
    assert Job.objects.count() == 1


def test_an_empty_file_is_refused_on_the_form(tree):
    client = client_for(tree["acme"], Role.ADMIN)
    audit_rows = AuditLog.objects.count()
    response = client.post(list_url(tree["acme"]), {"file": upload(b"", "empty.csv")})

    assert response.status_code == 400
    assert response.context["form"].errors == {"file": ["The submitted file is empty."]}
    assert (Job.objects.count(), AuditLog.objects.count()) == (0, audit_rows)
