"""/api/v1/device-imports/ and /api/v1/device-exports/devices.csv: the authorization matrix,
the rejected-rows file, the export's selection and its round trip through the import."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.response import Response
from rest_framework.test import APIClient

from apps.accounts.roles import ROLE_PERMISSIONS, Role
from apps.core.actors import SYSTEM
from apps.core.models import Job, JobStatus
from apps.devices import imports
from apps.devices.exports import EXPORT_COLUMNS
from apps.devices.models import Device
from tests.authz import (
    API_KEY,
    ROLES,
    Call,
    Case,
    assert_authz_matrix,
    error,
    iso,
    last_audit,
    make_principal,
)
from tests.factories import actor, make_member

from .test_imports_support import csv_text, make_catalog, run

pytestmark = pytest.mark.django_db

IMPORTS = "/api/v1/device-imports/"
EXPORT = "/api/v1/device-exports/devices.csv"
VIEWERS_OF_JOBS = {role for role in ROLES if "job.view" in ROLE_PERMISSIONS[role]}
VIEWERS_OF_DEVICES = {role for role in ROLES if "device.view" in ROLE_PERMISSIONS[role]}
ADDERS = {role for role in ROLES if "device.add" in ROLE_PERMISSIONS[role]}


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def catalog(tree):
    return make_catalog(tree)


@dataclass(frozen=True)
class Upload(Call):
    """A multipart POST of ``data["content"]`` as ``file`` with the other fields."""

    def send(self, client: APIClient) -> Response:
        fields = dict(self.data)
        content = fields.pop("content")
        fields["file"] = SimpleUploadedFile(fields.pop("name", "devices.csv"), content)
        return client.post(self.path, fields, format="multipart")  # type: ignore[no-any-return]


def job_json(job: Job) -> dict[str, Any]:
    job.refresh_from_db()
    return {
        "id": str(job.pk),
        "organization": str(job.organization_id),
        "status": job.status,
        "file_name": job.params.get("file_name", ""),
        "total": job.total,
        "processed": job.processed,
        "succeeded": job.succeeded,
        "failed": job.failed,
        "percent": job.percent,
        "result": job.result,
        "error": job.error,
        "actor_label": job.actor_label,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "rejected_url": f"{IMPORTS}{job.pk}/rejected.csv",
    }


def csv_rows(response: Any) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


CONTENT = csv_text(["S-1,plain,,One,,,,,", "S-2,plain,,Two,,,,,retired"])


def finished_import(world: Any) -> Job:
    """An import of retail's, run to the end: one device created, one row rejected."""
    make_catalog(world.tree)
    return run(SYSTEM, world.tree["retail"], CONTENT)


# --- the matrix --------------------------------------------------------------------------------


def test_upload_matrix(authz_world):
    def expect(attempt, response):
        job = Job.objects.get(kind=imports.KIND)
        assert response.json() == job_json(job)
        assert (job.status, job.organization_id, job.params["file_name"]) == (
            JobStatus.QUEUED, attempt.world.tree["retail"].pk, "fleet.csv",
        )  # fmt: skip
        assert job.input_file.read() == CONTENT.encode()
        audit_row = last_audit("device.import")
        assert (audit_row.object_id, audit_row.actor_label) == (
            str(job.pk), attempt.principal.label,
        )  # fmt: skip

    assert_authz_matrix(
        authz_world,
        Case(
            permission="device.add",
            allowed=ADDERS,
            request=lambda a: Upload(
                "post",
                IMPORTS,
                {
                    "organization": str(a.world.tree["retail"].pk),
                    "content": CONTENT.encode(),
                    "name": "fleet.csv",
                },
            ),
            status=201,
            state=lambda a: Job.objects.count(),
            expect=expect,
        ),
    )


def test_list_matrix(authz_world):
    def expect(attempt, response):
        assert response.json()["results"] == [job_json(attempt.target)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="job.view",
            allowed=VIEWERS_OF_JOBS,
            setup=finished_import,
            request=lambda a: Call("get", IMPORTS),
            expect=expect,
            listing=True,
        ),
    )


def test_retrieve_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == job_json(attempt.target)
        assert response.json()["result"] == {
            "chunks": 1, "created": 1, "unchanged": 0, "rejected": 1,
        }  # fmt: skip

    assert_authz_matrix(
        authz_world,
        Case(
            permission="job.view",
            allowed=VIEWERS_OF_JOBS,
            setup=finished_import,
            request=lambda a: Call("get", f"{IMPORTS}{a.target.pk}/"),
            expect=expect,
        ),
    )


def test_rejected_rows_matrix(authz_world):
    def expect(attempt, response):
        assert response["Content-Type"] == "text/csv"
        assert csv_rows(response) == [
            [*CONTENT.splitlines()[0].split(","), "error"],
            ["S-2", "plain", "", "Two", "", "", "", "", "retired",
             "state: must be one of escrow, active, discovered"],
        ]  # fmt: skip

    assert_authz_matrix(
        authz_world,
        Case(
            permission="job.view",
            allowed=VIEWERS_OF_JOBS,
            setup=finished_import,
            request=lambda a: Call("get", f"{IMPORTS}{a.target.pk}/rejected.csv"),
            expect=expect,
        ),
    )


def exported_device(world: Any) -> Device:
    make_catalog(world.tree)
    run(SYSTEM, world.tree["retail"], csv_text(['E-1,plain,,=cmd,x;y,"{""k"": 1}",1.5,,active']))
    return Device.objects.get(serial="E-1")


def test_export_matrix(authz_world):
    def expect(attempt, response):
        device = attempt.target
        assert response["Content-Disposition"].startswith('attachment; filename="devices-')
        assert csv_rows(response) == [
            list(EXPORT_COLUMNS),
            ["E-1", str(device.profile_version.profile_id), "1", "'=cmd", "x;y", '{"k":1}',
             "1.5", "", "active", str(device.pk), str(device.organization_id)],
        ]  # fmt: skip

    def outsider_expect(attempt, response):
        assert response.status_code == 200
        assert csv_rows(response) == [list(EXPORT_COLUMNS)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="device.view",
            allowed=VIEWERS_OF_DEVICES,
            setup=exported_device,
            request=lambda a: Call("get", EXPORT, {"state": "active"}),
            expect=expect,
            outsider_expect=outsider_expect,
        ),
    )


# --- behaviour ---------------------------------------------------------------------------------


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_an_oversized_upload_is_refused_with_a_field_error(tree, catalog, settings):
    settings.DEVICE_IMPORT_MAX_BYTES = 20
    client = client_for(make_member(tree["acme"], Role.OWNER))
    response = Upload(
        "post", IMPORTS, {"organization": str(tree["acme"].pk), "content": b"x" * 21}
    ).send(client)

    assert response.status_code == 400
    assert error(response)["fields"] == {
        "file": ["File is too large: 21 bytes (at most 20 bytes)."]
    }
    assert Job.objects.count() == 0


def test_the_export_selects_with_the_selection_language(tree, catalog):
    owner = make_member(tree["acme"], Role.OWNER)
    rows = ["X-1,plain,,,eu,,,,active", "X-2,plain,,,eu;lab,,,,", "X-3,sensor,,,lab,,,,active"]
    run(actor(owner), tree["acme"], csv_text(rows))
    client = client_for(owner)

    def serials(query: dict[str, str]) -> list[str]:
        response = client.get(EXPORT, query)
        assert response.status_code == 200, response
        return sorted(row[0] for row in csv_rows(response)[1:])

    assert serials({}) == ["X-1", "X-2", "X-3"]
    assert serials({"state": "active"}) == ["X-1", "X-3"]
    assert serials({"tags_any": "lab", "state": "escrow,active"}) == ["X-2", "X-3"]
    assert serials({"profile": str(catalog["sensor"].pk)}) == ["X-3"]
    assert serials({"filter": json.dumps({"tags_all": ["eu", "lab"]})}) == ["X-2"]
    assert serials({"search": "X-"}) == ["X-1", "X-2", "X-3"]
    bad = client.get(EXPORT, {"state": "flying"})
    assert (bad.status_code, error(bad)["fields"]) == (
        400,
        {"state": ["Unknown value(s): flying."]},
    )


def test_an_export_re_imports_into_the_same_devices(tree, catalog):
    owner = make_member(tree["acme"], Role.OWNER)
    rows = [
        'T-1,sensor,1,Lobby,eu;lab,"{""color"": ""red"", ""floor"": 2}",45.5,-73.25,active',
        "T-2,plain,,,,,,,discovered",
        'T-3,sensor,,"Name, with comma",x,"{""indoor"": true}",,0.1,',
        'T-4,plain,,"tab\tback\\slash ""quoted""\nline","a""b;c\\d","{""k"": ""v\\n\\t\\\\""}",,,',
    ]
    first = run(actor(owner), tree["acme"], csv_text(rows))
    assert first.result == {"chunks": 1, "created": 4, "unchanged": 0, "rejected": 0}
    fields = ("serial", "profile_version_id", "name", "tags", "attributes", "latitude",
              "longitude", "state", "organization_id", "manufacturer_id")  # fmt: skip
    before = sorted(Device.objects.values_list(*fields))
    exported = b"".join(client_for(owner).get(EXPORT).streaming_content)
    Device.objects.all().delete()

    job = run(actor(owner), tree["acme"], exported, "export.csv")

    assert job.result == {"chunks": 1, "created": 4, "unchanged": 0, "rejected": 0}
    assert sorted(Device.objects.values_list(*fields)) == before
    assert Device.objects.get(serial="T-4").tags == ['a"b', "c\\d"]
    assert Device.objects.get(serial="T-4").attributes == {"k": "v\n\t\\"}
    again = run(actor(owner), tree["acme"], exported, "export.csv")
    assert again.result == {"chunks": 1, "created": 0, "unchanged": 4, "rejected": 0}


def test_an_import_started_with_an_api_key_runs_as_that_key(tree, catalog):
    principal = make_principal(API_KEY, tree["acme"], Role.OPERATOR)
    response = Upload(
        "post", IMPORTS, {"organization": str(tree["acme"].pk), "content": CONTENT.encode()}
    ).send(principal.client)
    assert response.status_code == 201

    job = imports.import_run(job_id=response.json()["id"])

    assert job.result == {"chunks": 1, "created": 1, "unchanged": 0, "rejected": 1}
    row = last_audit("device.import")
    assert (row.object_id, row.actor_kind, row.actor_api_key_id, row.actor_label) == (
        str(Device.objects.get().pk), "api_key", principal.api_key.pk, principal.label,
    )  # fmt: skip
    assert principal.client.get(f"{IMPORTS}{job.pk}/").json() == job_json(job)
