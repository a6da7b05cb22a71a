"""Wellness in Debian's Chromium, served by a real daphne: the device page's vitals panel and
health badge, the fleet list's health column, and both following a heartbeat sweep live (the
sweeper's push -> fleet.js moves the connectivity -> health.js the health badge).

Screenshots land in test-artifacts/screenshots/wellness-*.png.
"""

from __future__ import annotations

import datetime

import pytest

from apps.accounts.roles import Role
from apps.devices.choices import DeviceState
from apps.devices.models import Device
from apps.telemetry.models import LatestValues
from apps.telemetry.wellness import heartbeat_sweep
from tests.portal.conftest import verified_member
from tests.portal.test_browser import SCREENSHOTS, sign_in
from tests.portal.test_fleet_browser import in_thread, page, row, served  # noqa: F401

from ..devices.registry_support import make_device, make_version
from .test_health import alert

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def shot(page, step: str) -> None:  # noqa: F811
    path = SCREENSHOTS / f"wellness-{step}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


@pytest.fixture
def wellness_fleet(tree) -> dict[str, Device]:
    now = datetime.datetime.now(tz=datetime.UTC)
    version = make_version(tree["acme"])
    active = DeviceState.ACTIVE
    devices = {
        "kiosk": make_device(
            tree["acme"],
            version,
            "KIOSK-01",
            name="Lobby kiosk",
            state=active,
            connectivity="online",
            last_seen_at=now - datetime.timedelta(seconds=20),
        ),
        "gate": make_device(
            tree["acme"],
            version,
            "GATE-02",
            state=active,
            connectivity="online",
            last_seen_at=now - datetime.timedelta(seconds=30),
        ),
        "pump": make_device(
            tree["acme"],
            version,
            "PUMP-03",
            state=active,
            connectivity="offline",
            last_seen_at=now - datetime.timedelta(hours=5),
        ),
        "spare": make_device(tree["acme"], version, "SPARE-04", state=active),
    }
    alert(devices["kiosk"], "minor", "open")
    alert(devices["gate"], "critical", "acknowledged")
    LatestValues.objects.create(
        device=devices["kiosk"],
        vitals={"battery_pct": 81.5, "rssi_dbm": -67.0, "load_1m": 0.12, "disk_free_mb": 512.0},
        vitals_at=now - datetime.timedelta(seconds=20),
        uptime_s=266_400,
        boot=7,
    )
    return devices


def health_of(page, selector: str) -> tuple[str, str]:  # noqa: F811
    badge = page.locator(selector)
    return badge.get_attribute("data-health"), badge.inner_text()


def age(device: Device, seconds: int) -> None:
    """The device was last seen ``seconds`` ago (its heartbeats stopped)."""
    seen = datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(seconds=seconds)
    Device.objects.filter(pk=device.pk).update(last_seen_at=seen)


def test_the_device_page_shows_vitals_and_follows_a_sweep_live(tree, wellness_fleet, page):  # noqa: F811
    verified_member(tree["acme"], Role.VIEWER, "viewer@acme.test")
    kiosk = wellness_fleet["kiosk"]
    sign_in(page, "viewer@acme.test")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    page.goto(f"/o/{tree['acme'].pk}/devices/{kiosk.pk}/")
    page.wait_for_selector("body[data-live=open]")

    vitals = page.locator("#device-vitals .vital").all_inner_texts()
    assert [text.replace("\n", " ") for text in vitals] == [
        "Battery 81.5%",
        "Disk free 512MB",
        "Load 1m 0.12",
        "RSSI -67dBm",
    ]
    assert page.locator("#device-uptime").inner_text() == "3 d 2 h"
    assert page.locator("#device-boot").inner_text() == "7"
    heartbeat = LatestValues.objects.get(device=kiosk).vitals_at
    assert page.locator("#vitals-at time").get_attribute("datetime") == heartbeat.isoformat()
    assert page.locator("#vitals-at").inner_text().startswith("last heartbeat ")
    assert health_of(page, "#device-header [data-health]") == ("warning", "Warning")
    assert health_of(page, "#device-wellness [data-health]") == ("warning", "Warning")
    shot(page, "1-device")

    age(kiosk, 600)  # ten minutes without a heartbeat: past 60 s x 3 + 15 s
    swept = in_thread(heartbeat_sweep)
    assert [change.serial for change in swept.offline] == ["KIOSK-01"]
    page.wait_for_selector("#device-header [data-connectivity=offline]")
    page.wait_for_selector("#device-wellness [data-health=offline]")
    assert health_of(page, "#device-header [data-health]") == ("offline", "Offline")
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    shot(page, "2-device-swept-offline")


def test_the_fleet_list_shows_health_and_filters_by_it(tree, wellness_fleet, page):  # noqa: F811
    verified_member(tree["acme"], Role.VIEWER, "viewer@acme.test")
    sign_in(page, "viewer@acme.test")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    page.goto(f"/o/{tree['acme'].pk}/devices/?sort=serial")
    page.wait_for_selector("body[data-live=open]")
    cells = page.locator("#fleet tbody tr td[data-label=Health]").all_inner_texts()
    serials = page.locator("#fleet tbody tr td[data-label=Serial]").all_inner_texts()
    assert list(zip(serials, cells, strict=True)) == [
        ("GATE-02", "Critical"),
        ("KIOSK-01", "Warning"),
        ("PUMP-03", "Offline"),
        ("SPARE-04", "Unknown"),
    ]
    shot(page, "3-fleet")

    gate = wellness_fleet["gate"]
    age(gate, 600)
    in_thread(heartbeat_sweep)
    page.wait_for_selector(f'#fleet tr[data-device-id="{gate.pk}"] [data-health=offline]')
    assert row(page, gate).locator("[data-connectivity]").inner_text() == "Offline"
    shot(page, "4-fleet-swept-offline")

    page.select_option("select[name=health]", "warning")
    page.click("#fleet-filter button[type=submit]")
    page.wait_for_url("**health=warning**")
    assert page.locator("#fleet tbody tr td[data-label=Serial]").all_inner_texts() == ["KIOSK-01"]
    shot(page, "5-fleet-filtered")
