"""The portal's job pages: log lines, the cancel button, who may press it, and the generic page
of a job that is not an import (a bulk transition)."""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import Job, JobLine
from apps.devices import imports, jobs, services
from tests.factories import make_member

from .registry_support import make_version
from .test_bulk_transition import fleet
from .test_imports_support import upload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def client_for(organization, role: str) -> tuple[Client, str]:
    user = make_member(organization, role)
    client = Client()
    client.force_login(user)
    return client, user.email


def shown_lines(content: bytes) -> list[tuple[str, str]]:
    found = re.findall(
        r'<li class="job-line job-line-(\w+)"[^>]*>.*?<span class="job-line-message">(.*?)</span>',
        content.decode(),
    )
    return [(level, html.unescape(message)) for level, message in found]


def queued_import(organization) -> Job:
    return imports.import_start(
        actor=SYSTEM, organization=organization, upload=upload("serial\nX-1\n")
    )


def test_the_import_page_shows_the_log_and_a_cancel_button_to_who_may_add_devices(tree):
    job = queued_import(tree["acme"])
    jobs.job_log(job.pk, "Ignored unknown columns: colour.", level="warning")
    operator, _ = client_for(tree["acme"], Role.OPERATOR)
    viewer, _ = client_for(tree["acme"], Role.VIEWER)

    for_operator = operator.get(f"/imports/{job.pk}/")
    for_viewer = viewer.get(f"/imports/{job.pk}/")

    line = JobLine.objects.get(job=job)
    for page in (for_operator, for_viewer):
        assert page.status_code == 200
        assert shown_lines(page.content) == [("warning", "Ignored unknown columns: colour.")]
        assert f'data-log-api="/api/v1/jobs/{job.pk}/log/"'.encode() in page.content
        assert f'data-after="{line.pk}"'.encode() in page.content
    assert f'action="/jobs/{job.pk}/cancel/"'.encode() in for_operator.content
    assert b'id="job-cancel"' not in for_viewer.content


def test_an_operator_cancels_an_import_and_comes_back_to_its_page(tree):
    job = queued_import(tree["acme"])
    client, email = client_for(tree["acme"], Role.OPERATOR)

    response = client.post(f"/jobs/{job.pk}/cancel/")
    page = client.get(response["Location"])

    assert (response.status_code, response["Location"]) == (302, f"/imports/{job.pk}/")
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert b"Job cancelled." in page.content
    assert shown_lines(page.content) == [("warning", f"Cancelled by {email} before it started.")]
    assert b'id="job-cancel"' not in page.content
    assert b'id="import-status">Cancelled<' in page.content


def test_who_may_not_cancel_gets_403_and_another_organization_404(tree):
    job = queued_import(tree["acme"])
    viewer, _ = client_for(tree["acme"], Role.VIEWER)
    technician, _ = client_for(tree["acme"], Role.TECHNICIAN)  # may transition, not add
    outsider, _ = client_for(tree["globex"], Role.OWNER)

    assert viewer.post(f"/jobs/{job.pk}/cancel/").status_code == 403
    assert technician.post(f"/jobs/{job.pk}/cancel/").status_code == 403
    assert outsider.post(f"/jobs/{job.pk}/cancel/").status_code == 404
    assert outsider.get(f"/jobs/{job.pk}/").status_code == 404
    assert viewer.get(f"/jobs/{job.pk}/cancel/").status_code == 405
    job.refresh_from_db()
    assert (job.status, JobLine.objects.filter(job=job).count()) == ("queued", 0)


def test_cancelling_a_finished_job_says_why_and_changes_nothing(tree):
    job = queued_import(tree["acme"])
    jobs.job_finish(job.pk, status="succeeded", result={"created": 1})
    client, _ = client_for(tree["acme"], Role.OWNER)

    page = client.post(f"/jobs/{job.pk}/cancel/", follow=True)

    assert page.redirect_chain == [(f"/imports/{job.pk}/", 302)]
    message = "Only a queued or running job can be cancelled; this one has ended (Succeeded)."
    assert html.escape(message).encode() in page.content
    job.refresh_from_db()
    assert job.status == "succeeded"


def test_a_bulk_transition_has_the_generic_job_page(tree):
    version = make_version(tree["acme"])
    fleet(tree["acme"], version, 2)
    job = services.device_bulk_transition(
        actor=SYSTEM, organization=tree["acme"], selection={}, transition="suspend"
    )
    client, email = client_for(tree["acme"], Role.TECHNICIAN)

    page = client.get(f"/jobs/{job.pk}/")
    fleet_page = client.get(f"/o/{tree['acme'].pk}/devices/", {"job": str(job.pk)})
    cancelled = client.post(f"/jobs/{job.pk}/cancel/", follow=True)

    assert page.status_code == 200
    assert b"<h1>Bulk transition: suspend</h1>" in page.content
    assert f'data-api="/api/v1/jobs/{job.pk}/"'.encode() in page.content
    assert f'action="/jobs/{job.pk}/cancel/"'.encode() in page.content
    assert b'id="fleet-job-link"' in fleet_page.content
    assert f'href="/jobs/{job.pk}/"'.encode() in fleet_page.content
    assert cancelled.redirect_chain == [(f"/jobs/{job.pk}/", 302)]
    assert shown_lines(cancelled.content) == [
        ("warning", f"Cancelled by {email} before it started.")
    ]
    assert b'id="job-status">Cancelled<' in cancelled.content


def test_the_generic_page_of_an_import_is_its_import_page(tree):
    job = queued_import(tree["acme"])
    client, _ = client_for(tree["acme"], Role.VIEWER)
    response = client.get(f"/jobs/{job.pk}/")
    assert (response.status_code, response["Location"]) == (302, f"/imports/{job.pk}/")
