"""A job page in headless Chromium: the log and the cancel button of a queued bulk transition.

Screenshots land in test-artifacts/screenshots/jobs-<step>.png.
"""

from __future__ import annotations

import pytest

from apps.accounts.roles import Role
from apps.core.models import JobLine, JobStatus
from apps.devices import jobs, services
from tests.factories import actor
from tests.portal.conftest import verified_member
from tests.portal.test_browser import Shots, browser, page, sign_in  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_queued_bulk_transition_is_cancelled_from_its_page(tree, page):  # noqa: F811
    shot = Shots(page, "jobs")
    operator = verified_member(tree["acme"], Role.OPERATOR, "operator@acme.test")
    # made directly, not through device_bulk_transition: no worker may pick it up
    job = jobs.job_create(
        actor=actor(operator),
        organization=tree["acme"],
        kind=services.BULK_KIND,
        params={"transition": "suspend", "selection": {}},
    )
    jobs.job_log(job.pk, "Waiting for a worker.")

    sign_in(page, "operator@acme.test")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    page.goto(f"/jobs/{job.pk}/")
    assert page.locator("h1").inner_text() == "Bulk transition: suspend"
    assert page.locator("#job-status").inner_text() == "Queued"
    assert page.locator("#job-log-lines .job-line-message").all_inner_texts() == [
        "Waiting for a worker."
    ]
    shot("1-queued")

    page.click("#job-cancel")
    page.wait_for_url(f"**/jobs/{job.pk}/")
    assert page.locator(".alert-success").inner_text() == "Job cancelled."
    assert page.locator("#job-status").inner_text() == "Cancelled"
    assert page.locator("#job-log-lines .job-line-message").all_inner_texts() == [
        "Waiting for a worker.",
        "Cancelled by operator@acme.test before it started.",
    ]
    assert page.locator("#job-cancel").count() == 0
    shot("2-cancelled")
    job.refresh_from_db()
    assert (job.status, JobLine.objects.filter(job=job).count()) == (JobStatus.CANCELLED, 2)
