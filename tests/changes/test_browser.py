"""The maker-checker flow in Debian's Chromium, by two different people: the creator (an
owner, who could approve others' requests) creates a critical request on the portal's form
and cannot approve it; the approver finds it in the approvals inbox, reviews the dry run and
approves it; the creator executes it.

Screenshots land in test-artifacts/screenshots/changes-*.png.
"""

from __future__ import annotations

import pytest
from django.db import connections

from apps.accounts.roles import Role
from apps.changes.models import Approval, ChangeRequest
from tests.portal.conftest import verified_member
from tests.portal.test_browser import SCREENSHOTS, browser, page, sign_in  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shot(page, step: str) -> None:  # noqa: F811  (the page fixture's name)
    path = SCREENSHOTS / f"changes-{step}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


def test_two_people_create_approve_and_execute_a_request(
    tree,
    fake,
    devices,
    browser,  # noqa: F811  (the fixture imported above)
    page,  # noqa: F811
    live_server,
):
    acme = tree["acme"]
    verified_member(acme, Role.OWNER, "maker@acme.test")
    verified_member(acme, Role.APPROVER, "checker@acme.test")

    # the creator fills the form: a critical command to every device of acme
    sign_in(page, "maker@acme.test")
    page.wait_for_url(f"**/o/{acme.pk}/")
    page.click("nav#sidenav >> text=Change requests")
    page.wait_for_url(f"**/o/{acme.pk}/change-requests/")
    assert page.locator("#requests-empty").is_visible()
    page.click("#new-request")
    page.select_option("#id_kind", "fake")
    page.fill("#id_title", "Reboot every screen")
    page.fill("#id_spec", '{"action": "reboot", "critical": true}')
    page.fill("#id_target", '{"filter": {}}')
    shot(page, "1-new")
    page.click("#create-request")
    page.wait_for_selector("#request-title")
    request = ChangeRequest.objects.get(title="Reboot every screen")
    assert page.locator(".page-header [data-status]").inner_text() == "Pending approval"
    assert page.locator("#request-policy").inner_text() == (
        "1 approval: critical command (policy Default)"
    )
    assert page.locator("#request-hash").inner_text() == request.content_hash
    assert page.locator("#own-request").is_visible()
    assert page.locator("#decision-form").count() == 0  # never for the creator
    assert page.locator("#preview tbody tr").count() == 4
    shot(page, "2-created")
    page.click("nav#sidenav >> text=Approvals")
    assert page.locator("#inbox-empty").is_visible()  # their own request is not in their inbox

    # the approver, in another browser context
    other = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=live_server.url)
    checker = other.new_page()
    try:
        sign_in(checker, "checker@acme.test")
        checker.wait_for_url(f"**/o/{acme.pk}/")
        checker.click("nav#sidenav >> text=Approvals")
        checker.wait_for_url(f"**/o/{acme.pk}/approvals/")
        assert checker.locator("#inbox tbody tr").count() == 1
        shot(checker, "3-inbox")
        checker.click("#inbox >> text=Reboot every screen")
        checker.wait_for_selector("#decision-form")
        assert checker.locator("#preview-summary").inner_text() == "4 devices would receive it."
        assert checker.locator("#preview .cr-diff .to").first.inner_text() == "reboot"
        shot(checker, "4-review")
        checker.fill("#id_comment", "Fine after hours")
        checker.click("#decision-form button[data-action=approve]")
        checker.wait_for_selector(".page-header [data-status=approved]")
        assert checker.locator("#approvals tbody tr[data-decision=approve]").count() == 1
        assert checker.locator("#request-actions").count() == 0  # approvers do not execute
        shot(checker, "5-approved")
    finally:
        other.close()

    # the creator executes it
    page.goto(f"/change-requests/{request.pk}/")
    page.click("#request-actions button[data-action=execute]")
    page.wait_for_selector(".page-header [data-status=executing]")
    assert [
        entry.split("\n")[0] for entry in page.locator("#request-timeline strong").all_inner_texts()
    ] == [
        "Create",
        "Approve",
        "Execute",
    ]
    shot(page, "6-executed")
    request.refresh_from_db()
    assert request.status == "executing"
    approval = Approval.objects.get(request=request)
    assert (approval.approver_label, approval.comment) == ("checker@acme.test", "Fine after hours")
    assert len(fake.executed) == 1
    assert sorted(fake.executed[0][1]) == sorted(d.pk for d in devices[:4])
    connections.close_all()
