"""The fleet list in Debian's Chromium follows connectivity changes live: a batch applied by
``connectivity_apply`` reaches the open page as one push per organization and updates the
rows' badges without a reload.

Screenshots land in test-artifacts/screenshots/fleet-connectivity-*.png.
"""

from __future__ import annotations

import datetime

import pytest

from apps.accounts.roles import Role
from apps.devices.connectivity import StatusUpdate, connectivity_apply
from apps.devices.models import Device
from tests.portal.conftest import verified_member
from tests.portal.test_browser import sign_in
from tests.portal.test_fleet_browser import devices, in_thread, page, row, served, shot  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def status(device: Device, state: str) -> StatusUpdate:
    payload = f'{{"state": "{state}"}}'.encode()
    return StatusUpdate(f"devices/{device.pk}/status", payload, datetime.datetime.now(datetime.UTC))


def connectivity_of(page, device: Device) -> str:  # noqa: F811
    return row(page, device).locator("[data-connectivity]").get_attribute("data-connectivity")


def test_connectivity_changes_reach_the_open_fleet_list(tree, devices, page):  # noqa: F811
    verified_member(tree["acme"], Role.OWNER, "owner@acme.test")
    sign_in(page, "owner@acme.test")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    page.goto(f"/o/{tree['acme'].pk}/devices/")
    page.wait_for_selector("body[data-live=open]")
    hall, store = devices["hall"], devices["store"]
    hall_seen = row(page, hall).locator("[data-last-seen]").inner_text()
    assert (connectivity_of(page, hall), connectivity_of(page, store)) == ("online", "offline")
    shot(page, "connectivity-1-before")

    # Two organizations (hall in Acme, store in Retail Co): one push each, after commit.
    changed = in_thread(
        connectivity_apply, updates=[status(hall, "offline"), status(store, "online")]
    )
    assert sorted(change.serial for change in changed) == ["SN-002", "SN-003"]
    page.wait_for_function(
        "ids => ids.every(([id, value]) => document.querySelector("
        "`#fleet tr[data-device-id='${id}'] [data-connectivity]`).dataset.connectivity === value)",
        arg=[[str(hall.pk), "offline"], [str(store.pk), "online"]],
    )

    assert row(page, hall).locator("[data-connectivity]").inner_text() == "Offline"
    assert row(page, store).locator("[data-connectivity]").inner_text() == "Online"
    assert row(page, hall).locator("[data-connectivity]").get_attribute("class") == (
        "connectivity conn-offline"
    )
    # Going offline leaves "last seen" alone; coming online makes it now.
    assert row(page, hall).locator("[data-last-seen]").inner_text() == hall_seen
    assert row(page, store).locator("[data-last-seen]").inner_text() == "just now"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    shot(page, "connectivity-2-after")
