"""A job's log lines through the API: ``GET /jobs/{id}/log/`` and ``/device-imports/{id}/log/``."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import Job, JobLine
from apps.devices import jobs
from tests.authz import Call, Case, assert_authz_matrix, error, iso
from tests.factories import make_member

from .test_imports_support import make_catalog, run

pytestmark = pytest.mark.django_db

VIEWERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.APPROVER, Role.TECHNICIAN, Role.VIEWER}
CONTENT = "serial,profile,colour\nL-1,plain,red\nL-2,nope,blue\n"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def imported(world) -> Job:
    """A finished import of acme with two log lines (an ignored column, the outcome)."""
    make_catalog(world.tree)
    return run(SYSTEM, world.home, CONTENT)


def line_json(line: JobLine) -> dict[str, Any]:
    return {
        "id": line.pk,
        "created_at": iso(line.created_at),
        "level": line.level,
        "message": line.message,
    }


def expect_lines(attempt, response) -> None:
    lines = JobLine.objects.filter(job=attempt.target).order_by("id")
    assert [(line.level, line.message) for line in lines] == [
        ("warning", "Ignored unknown columns: colour."),
        ("info", "Done: 1 created, 0 unchanged, 1 rejected."),
    ]
    assert response.json() == {
        "next": None,
        "previous": None,
        "results": [line_json(line) for line in lines],
    }


@pytest.mark.parametrize("prefix", ["jobs", "device-imports"])
def test_log_matrix_serves_the_lines_oldest_first(authz_world, prefix):
    assert_authz_matrix(
        authz_world,
        Case(
            permission="job.view",
            allowed=VIEWERS,
            setup=imported,
            request=lambda a: Call("get", f"/api/v1/{prefix}/{a.target.pk}/log/"),
            expect=expect_lines,
        ),
    )


def _client(organization, role: str) -> APIClient:
    client = APIClient()
    client.force_login(make_member(organization, role))
    return client


def test_after_tails_the_lines_written_since_the_last_one_read(tree):
    job = jobs.job_create(actor=SYSTEM, organization=tree["acme"], kind="devices.import", params={})
    for number in range(1, 5):
        jobs.job_log(job.pk, f"line {number}", level="error" if number == 3 else "info")
    _, second, third, fourth = JobLine.objects.filter(job=job).order_by("id")
    client = _client(tree["acme"], Role.VIEWER)

    page = client.get(f"/api/v1/jobs/{job.pk}/log/", {"after": second.pk, "page_size": 1})
    following = client.get(page.json()["next"])
    nothing = client.get(f"/api/v1/jobs/{job.pk}/log/", {"after": fourth.pk})

    assert page.json()["results"] == [line_json(third)]
    assert (third.level, third.message) == ("error", "line 3")
    assert following.json()["results"] == [line_json(fourth)]
    assert following.json()["next"] is None
    assert nothing.json() == {"next": None, "previous": None, "results": []}


def test_a_bad_after_is_a_field_error(tree):
    job = jobs.job_create(actor=SYSTEM, organization=tree["acme"], kind="devices.import", params={})
    response = _client(tree["acme"], Role.VIEWER).get(f"/api/v1/jobs/{job.pk}/log/", {"after": "x"})
    assert response.status_code == 400
    assert error(response)["fields"] == {"after": ["A valid integer is required."]}


def test_an_import_route_does_not_serve_another_kind_of_job(tree):
    job = jobs.job_create(
        actor=SYSTEM, organization=tree["acme"], kind="devices.bulk_transition", params={}
    )
    response = _client(tree["acme"], Role.OWNER).get(f"/api/v1/device-imports/{job.pk}/log/")
    assert response.status_code == 404


@pytest.mark.parametrize("count", [3, 300])
def test_the_log_takes_the_same_queries_whatever_its_length(tree, count, django_assert_num_queries):
    job = jobs.job_create(actor=SYSTEM, organization=tree["acme"], kind="devices.import", params={})
    JobLine.objects.bulk_create(JobLine(job=job, message=f"line {n}") for n in range(count))
    client = _client(tree["acme"], Role.VIEWER)
    client.get("/api/v1/jobs/")  # warm the session and the actor's cache
    # the user, a membership check, the actor's grants, the job, its lines (one page)
    with django_assert_num_queries(5):
        response = client.get(f"/api/v1/jobs/{job.pk}/log/", {"page_size": 500})
    assert len(response.json()["results"]) == count
