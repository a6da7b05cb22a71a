"""The fleet dashboard and a live-updating device chart in Debian's Chromium, served by a real
daphne (HTTP + websockets) against the test database: counts, map markers and the fleet chart
on the dashboard; on a device page, the chart drawn by uPlot from the aggregate API, a metric
and a range picked, and points pushed through the websocket appearing without a reload.

Screenshots land in test-artifacts/screenshots/analytics-*.png.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import timezone

from apps.accounts.roles import Role
from apps.devices.models import Device
from apps.telemetry import live
from apps.telemetry.models import Alert, AlertRule, LatestValues
from tests.portal.conftest import verified_member
from tests.portal.test_browser import SCREENSHOTS, sign_in
from tests.portal.test_fleet_browser import in_thread, page, served  # noqa: F401 (fixtures)

from .analytics_support import HEARTBEAT, Row, insert, make_fleet

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def shot(page: Any, step: str, *, full_page: bool = True) -> None:  # noqa: F811
    path = SCREENSHOTS / f"analytics-{step}.png"
    if full_page:
        page.evaluate("window.scrollTo(0, 0)")  # else the sticky top bar lands mid-page
    page.screenshot(path=str(path), full_page=full_page)
    assert path.stat().st_size > 0


@pytest.fixture
def fleet(tree) -> Any:
    found = make_fleet(tree)
    d = found.devices
    now = timezone.now()
    for key, connectivity, firmware in (
        ("a1", "online", "1.4.2"),
        ("a2", "offline", "1.4.2"),
        ("r1", "online", "1.5.0"),
    ):
        Device.objects.filter(pk=d[key].pk).update(
            connectivity=connectivity, last_seen_at=now, firmware_version=firmware
        )
    rule = AlertRule.objects.create(organization=tree["acme"], name="Too hot", kind="threshold")
    Alert.objects.create(
        organization=tree["retail"], rule=rule, device=d["r1"], severity="critical", message="hot"
    )
    # the last 50 minutes: a temperature every 5 minutes, a heartbeat every 10
    rows = []
    for index in range(10):
        ts = now - datetime.timedelta(minutes=50 - 5 * index)
        for key, base in (("a1", 20.0), ("r1", 30.0)):
            rows.append(Row(d[key], ts, {"temperature": base + index * 0.5}, seq=index + 1))
        if index % 2 == 0:
            rows.append(
                Row(
                    d["a1"],
                    ts,
                    {"battery_pct": 90.0 - index, "uptime_s": 60 * index},
                    kind=HEARTBEAT,
                    seq=index + 1,
                )
            )
    insert(rows)
    LatestValues.objects.create(
        device=d["a1"],
        metrics={"temperature": 24.5},
        metrics_at=now,
        vitals={"battery_pct": 82.0},
        vitals_at=now,
    )
    verified_member(tree["acme"], Role.OWNER, "owner@acme.test")
    return found


def test_the_fleet_dashboard(tree, fleet, page):  # noqa: F811
    sign_in(page, "owner@acme.test")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    page.click("nav >> text=Fleet dashboard")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/fleet-dashboard/")
    stats = page.locator("#dashboard-stats [data-stat]")
    assert stats.all_inner_texts()[:4] == ["4", "2", "1", "1"]
    assert page.locator("#dashboard-health [data-health] strong").all_inner_texts() == [
        "1",
        "0",
        "1",
        "1",
        "1",
    ]
    assert page.locator("#dashboard-firmware tbody td.mono").all_inner_texts() == [
        "1.4.2",
        "not reported",
        "1.5.0",
    ]
    page.wait_for_selector("#fleet-map[data-markers]")
    assert page.locator("#fleet-map").get_attribute("data-located") == "4"
    page.wait_for_selector("#fleet-chart[data-chart-state=ready]")
    assert page.locator("#fleet-chart").get_attribute("data-chart-samples") == "20"
    assert page.locator("#fleet-chart .u-legend .u-series").count() == 3  # time, Sensor, Meter
    shot(page, "1-dashboard")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.wait_for_selector("#fleet-chart[data-chart-state=ready]")
    assert page.evaluate("document.documentElement.scrollWidth") == 390
    shot(page, "2-dashboard-phone")


def test_a_device_chart_updates_live(tree, fleet, page):  # noqa: F811
    a1 = fleet.devices["a1"]
    sign_in(page, "owner@acme.test")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    page.goto(f"/o/{tree['acme'].pk}/devices/{a1.pk}/")
    chart = page.locator("#device-chart")
    page.wait_for_selector("#device-chart[data-chart-state=ready][data-chart-live=open]")
    assert chart.locator("[data-chart-metric] option").all_inner_texts() == [
        "temperature (°C)",
        "door_open",
        "battery_pct",
        "uptime_s",
    ]
    assert chart.get_attribute("data-chart-samples") == "10"
    assert chart.locator("canvas").count() == 1
    csv = chart.locator("[data-chart-csv]").get_attribute("href")
    assert csv.startswith("/api/v1/telemetry/aggregate/export/?device=")
    assert "metric=temperature" in csv
    shot(page, "3-device-chart")

    # New samples arrive: the ingest worker's push after commit (here called directly).
    for value in (31.5, 32.0):
        now = timezone.now().isoformat()
        pushed = {
            a1.pk: {
                "organization_id": str(tree["acme"].pk),
                "ts": now,
                "metrics_at": now,
                "vitals_at": None,
                "metrics": {"temperature": value},
                "vitals": {},
            }
        }
        in_thread(live.watched_devices, fresh=True)
        assert in_thread(live.push_latest, pushed) == 1
        page.wait_for_function(
            "value => document.querySelector('#device-chart').dataset.chartLast === value",
            arg=str(value).rstrip("0").rstrip("."),
        )
    assert chart.get_attribute("data-chart-samples") == "12"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    shot(page, "4-device-chart-live")

    page.select_option("#device-chart [data-chart-metric]", "vitals.battery_pct")
    page.click("#device-chart [data-range='24h']")
    page.wait_for_selector("#device-chart[data-chart-state=ready]")
    assert chart.get_attribute("data-chart-samples") == "5"
    assert chart.locator("[data-range='24h']").get_attribute("aria-pressed") == "true"
    page.select_option("#device-chart [data-chart-metric]", "door_open")
    page.wait_for_selector("#device-chart[data-chart-state=empty]")
    assert chart.locator("[data-chart-status]").inner_text() == (
        "No data for door_open in this range."
    )
    page.select_option("#device-chart [data-chart-metric]", "temperature")
    page.wait_for_selector("#device-chart[data-chart-state=ready]")
    shot(page, "5-device-chart-24h")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    page.wait_for_selector("#device-chart[data-chart-state=ready]")
    assert page.evaluate("document.documentElement.scrollWidth") == 390
    page.locator("#device-chart").scroll_into_view_if_needed()
    shot(page, "6-device-chart-phone", full_page=False)
