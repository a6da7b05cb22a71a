"""Cancelling jobs through the API: ``POST /jobs/{id}/cancel/`` (any kind, the permission that
starting that kind of job needs) and ``POST /device-imports/{id}/cancel/`` (``device.add``)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, Job, JobLine
from apps.devices import imports, jobs, services
from tests.authz import Call, Case, assert_authz_matrix, error, iso, last_audit
from tests.factories import make_member

from .test_imports_support import upload

pytestmark = pytest.mark.django_db

TRANSITIONERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.TECHNICIAN}
ADDERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR}


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def queued_bulk(world) -> Job:
    """A queued bulk transition of acme (never handed to a worker: on_commit does not fire)."""
    return services.device_bulk_transition(
        actor=SYSTEM, organization=world.home, selection={}, transition="suspend"
    )


def queued_import(world) -> Job:
    return imports.import_start(
        actor=SYSTEM, organization=world.home, upload=upload("serial\nX-1\n")
    )


def state(attempt) -> list[Any]:
    job = Job.objects.get(pk=attempt.target.pk)
    return [job.status, job.finished_at, JobLine.objects.filter(job=job).count()]


def expect_cancelled(attempt, response) -> None:
    job = Job.objects.get(pk=attempt.target.pk)
    principal = attempt.principal
    assert (job.status, response.json()["status"]) == ("cancelled", "cancelled")
    assert response.json()["finished_at"] == iso(job.finished_at) is not None
    assert list(JobLine.objects.filter(job=job).values_list("level", "message")) == [
        ("warning", f"Cancelled by {principal.label} before it started.")
    ]
    row = last_audit("job.cancel")
    assert (row.object_id, row.actor_kind, row.actor_label, row.changes) == (
        str(job.pk), principal.actor_kind, principal.label, {"status": ["queued", "cancelled"]},
    )  # fmt: skip


def test_jobs_cancel_matrix_for_a_bulk_transition(authz_world):
    assert_authz_matrix(
        authz_world,
        Case(
            permission="device.transition",
            allowed=TRANSITIONERS,
            setup=queued_bulk,
            request=lambda a: Call("post", f"/api/v1/jobs/{a.target.pk}/cancel/"),
            state=state,
            expect=expect_cancelled,
        ),
    )


def test_device_imports_cancel_matrix(authz_world):
    def expect(attempt, response) -> None:
        expect_cancelled(attempt, response)
        assert (response.json()["file_name"], response.json()["processed"]) == ("devices.csv", 0)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="device.add",
            allowed=ADDERS,
            setup=queued_import,
            request=lambda a: Call("post", f"/api/v1/device-imports/{a.target.pk}/cancel/"),
            state=state,
            expect=expect,
        ),
    )


def _client(organization, role: str) -> APIClient:
    client = APIClient()
    client.force_login(make_member(organization, role))
    return client


def test_a_technician_may_cancel_a_bulk_transition_but_not_an_import(tree):
    job = imports.import_start(
        actor=SYSTEM, organization=tree["acme"], upload=upload("serial\n1\n")
    )
    response = _client(tree["acme"], Role.TECHNICIAN).post(f"/api/v1/jobs/{job.pk}/cancel/")

    assert response.status_code == 403
    assert error(response)["code"] == "permission_denied"
    job.refresh_from_db()
    assert job.status == "queued"
    assert AuditLog.objects.filter(action="job.cancel").count() == 0


def test_cancelling_a_finished_job_is_a_400_naming_the_status(tree):
    job = jobs.job_create(
        actor=SYSTEM,
        organization=tree["acme"],
        kind=services.BULK_KIND,
        params={"transition": "suspend", "selection": {}},
    )
    job = services.bulk_transition_run(job_id=job.pk)  # nothing to move: succeeded
    client = _client(tree["acme"], Role.OPERATOR)

    response = client.post(f"/api/v1/jobs/{job.pk}/cancel/")

    assert response.status_code == 400
    body = error(response)
    assert (body["status"], body["code"], body["message"]) == (
        400, "invalid", "The request is invalid.",
    )  # fmt: skip
    assert body["fields"] == {
        "status": ["Only a queued or running job can be cancelled; this one has ended (Succeeded)."]
    }
    job.refresh_from_db()
    assert (job.status, AuditLog.objects.filter(action="job.cancel").count()) == ("succeeded", 0)


def test_cancelling_a_running_job_answers_while_it_is_still_stopping(tree):
    job = imports.import_start(
        actor=SYSTEM, organization=tree["acme"], upload=upload("serial\n1\n")
    )
    jobs.job_progress(job.pk, processed=10, succeeded=9, failed=1, status="running")
    operator = make_member(tree["acme"], Role.OPERATOR)
    client = APIClient()
    client.force_login(operator)

    response = client.post(f"/api/v1/device-imports/{job.pk}/cancel/")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["processed"], body["finished_at"]) == ("cancelled", 10, None)
    assert list(JobLine.objects.filter(job=job).values_list("message", flat=True)) == [
        f"Cancelled by {operator.email}; stopping after the chunk in progress."
    ]
