"""Configuration in Debian's Chromium: the device page's panel, the device's configuration
page (state, effective document, history), proposing a change on its form (a change request),
executing it, and the fleet overview's counts.

Screenshots land in test-artifacts/screenshots/configuration-*.png.
"""

from __future__ import annotations

import pytest
from django.db import connections

from apps.accounts.roles import Role
from apps.changes.models import ChangeRequest
from apps.configuration.models import ConfigurationVersion
from tests.portal.conftest import verified_member
from tests.portal.test_browser import SCREENSHOTS, browser, page, sign_in  # noqa: F401

from .support import make_device, make_version, run, set_spec

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def shot(page, step: str) -> None:  # noqa: F811  (the page fixture's name)
    path = SCREENSHOTS / f"configuration-{step}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


def test_an_operator_proposes_a_device_change_and_sees_it_in_the_history(
    tree,
    browser,  # noqa: F811  (the fixture imported above)
    page,  # noqa: F811
    live_server,
):
    acme = tree["acme"]
    device = make_device(make_version(acme), acme, serial="SIGN-1")
    run(acme, set_spec("organization", acme.pk, values={"brightness": 60}))
    verified_member(acme, Role.OPERATOR, "operator@acme.test")
    sign_in(page, "operator@acme.test")
    page.wait_for_url(f"**/o/{acme.pk}/")

    page.goto(f"/o/{acme.pk}/devices/{device.pk}/")
    page.wait_for_selector("#device-configuration-link")
    assert page.locator("#device-configuration [data-status]").inner_text() == "Pending"
    shot(page, "1-device-panel")
    page.click("#device-configuration-link")
    page.wait_for_selector("#configuration-effective")
    assert '"brightness": 60' in page.locator("#effective-document").inner_text()
    page.fill("#id_title", "Dim SIGN-1")
    page.fill("#id_values", '{"brightness": 20}')
    shot(page, "2-propose")
    page.click("#propose-change")
    page.wait_for_selector("#request-title")
    request = ChangeRequest.objects.get(title="Dim SIGN-1")
    assert request.status == "approved"  # not a critical key: no approval needed
    assert page.locator(".page-header [data-status]").inner_text() == "Approved"
    shot(page, "3-request")
    page.click("button[data-action=execute]")
    page.wait_for_selector(".page-header [data-status='completed']")
    assert list(
        ConfigurationVersion.objects.filter(device=device)
        .order_by("version")
        .values_list("version", "document__brightness")
    ) == [(1, 60), (2, 20)]

    page.goto(f"/configuration/devices/{device.pk}/")
    assert page.locator("#configuration-history tr[data-version]").count() == 2
    assert (
        "brightness: 60 → 20"
        in page.locator("#configuration-history tr[data-version='2']").inner_text()
    )
    shot(page, "4-history")
    page.goto(f"/o/{acme.pk}/configuration/")
    assert page.locator("#count-pending strong").inner_text() == "1"
    shot(page, "5-overview")
    connections.close_all()  # the live server's threads leave theirs open
