"""Wellness on the portal's fleet pages (Django test client): the device page's vitals panel
and health badge, the fleet list's health column and filter; access as for the fleet pages
(anonymous -> login, sibling organization -> 404, role without device.view -> 403); query counts
that do not grow with the fleet or the vitals."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.accounts.roles import Role
from apps.devices.choices import DeviceState
from apps.devices.models import Device
from apps.telemetry.models import LatestValues
from apps.telemetry.views_wellness import DeviceWellness, Vital, duration, number, vitals_of
from apps.telemetry.wellness import HeartbeatPolicy
from tests.factories import make_member

from ..devices.registry_support import make_device, make_version
from .test_health import alert

SEEN = datetime.datetime(2026, 11, 30, 9, 0, tzinfo=datetime.UTC)
VITALS = {"battery_pct": 81.5, "rssi_dbm": -67.0, "load_1m": 0.125, "disk_free_mb": 512.0}


def page(name: str, organization: Any, **kwargs: Any) -> str:
    return reverse(f"fleet:{name}", kwargs={"organization_id": organization.pk, **kwargs})


@pytest.fixture
def fleet(tree) -> dict[str, Device]:
    version = make_version(tree["acme"])
    active = DeviceState.ACTIVE
    devices = {
        "ok": make_device(
            tree["acme"], version, "W-1", state=active, connectivity="online", last_seen_at=SEEN
        ),
        "hot": make_device(
            tree["retail"], version, "W-2", state=active, connectivity="online", last_seen_at=SEEN
        ),
        "gone": make_device(
            tree["acme"], version, "W-3", state=active, connectivity="offline", last_seen_at=SEEN
        ),
        "new": make_device(tree["acme"], version, "W-4", state=active),
    }
    alert(devices["hot"], "critical", "open")
    LatestValues.objects.create(
        device=devices["ok"],
        vitals=VITALS,
        vitals_at=SEEN,
        uptime_s=93784,
        boot=3,
        metrics={"temperature": 21.5},
        metrics_at=SEEN,
    )
    return devices


@pytest.fixture
def viewer(tree):
    return make_member(tree["acme"], Role.VIEWER)


def test_the_device_page_shows_vitals_health_and_the_heartbeat_policy(client, tree, fleet, viewer):
    client.force_login(viewer)
    device = fleet["ok"]

    response = client.get(page("device", tree["acme"], device_id=device.pk))

    assert response.status_code == 200
    assert response.context["wellness"] == DeviceWellness(
        health="ok",
        alert_health="ok",
        policy=HeartbeatPolicy(60, 3, "profile"),
        offline_after="3 min 15 s",
        vitals=[
            Vital("battery_pct", "Battery", "81.5", "%"),
            Vital("disk_free_mb", "Disk free", "512", "MB"),
            Vital("load_1m", "Load 1m", "0.12", ""),
            Vital("rssi_dbm", "RSSI", "-67", "dBm"),
        ],
        vitals_at=SEEN,
        uptime="1 d 2 h",
        boot=3,
    )
    html = response.content.decode()
    assert '<dt title="battery_pct">Battery</dt><dd>81.5<small>%</small></dd>' in html
    assert '<dd id="device-uptime">1 d 2 h</dd>' in html
    assert "every 60 s; offline after 3 missed (3 min 15 s of silence)" in html
    assert html.count(f'data-health="ok" data-health-alerts="ok" data-health-of="{device.pk}"') == 2


def test_a_device_without_heartbeats_says_so(client, tree, fleet, viewer):
    client.force_login(viewer)

    response = client.get(page("device", tree["acme"], device_id=fleet["new"].pk))

    wellness = response.context["wellness"]
    assert (wellness.health, wellness.vitals, wellness.uptime, wellness.boot) == (
        "unknown",
        [],
        "",
        None,
    )
    html = response.content.decode()
    assert "no heartbeat received yet" in html
    assert 'id="device-vitals"' not in html


def test_the_device_page_shows_an_alerts_health(client, tree, fleet, viewer):
    client.force_login(viewer)
    response = client.get(page("device", tree["acme"], device_id=fleet["hot"].pk))
    assert (response.context["wellness"].health, response.context["wellness"].alert_health) == (
        "critical",
        "critical",
    )


def test_the_fleet_list_has_a_health_column(client, tree, fleet, viewer):
    client.force_login(viewer)

    response = client.get(page("list", tree["acme"]), {"sort": "serial"})

    assert [(d.serial, d.health, d.alert_health) for d in response.context["devices"]] == [
        ("W-1", "ok", "ok"),
        ("W-2", "critical", "critical"),
        ("W-3", "offline", "ok"),
        ("W-4", "unknown", "ok"),
    ]
    assert "<th>Health</th>" in response.content.decode()


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        ("ok", ["W-1"]),
        ("critical", ["W-2"]),
        ("offline", ["W-3"]),
        ("unknown", ["W-4"]),
        ("warning", []),
    ],
)
def test_the_fleet_list_filters_by_health(client, tree, fleet, viewer, health, expected):
    client.force_login(viewer)

    response = client.get(page("list", tree["acme"]), {"health": health, "sort": "serial"})

    assert [device.serial for device in response.context["devices"]] == expected
    assert f"health={health}" in response.context["filter_query"]


def test_an_unknown_health_shows_nothing_and_says_why(client, tree, fleet, viewer):
    client.force_login(viewer)
    response = client.get(page("list", tree["acme"]), {"health": "splendid"})
    assert list(response.context["devices"]) == []
    assert response.context["form"].errors["health"] == [
        "Select a valid choice. splendid is not one of the available choices."
    ]


def test_the_health_filter_keeps_the_fleet_pages_access_rules(client, tree, fleet):
    query = {"health": "critical"}
    response = client.get(page("list", tree["acme"]), query)
    assert (response.status_code, response.url.split("?")[0]) == (302, "/accounts/login/")
    client.force_login(make_member(tree["globex"], Role.OWNER))
    assert client.get(page("list", tree["acme"]), query).status_code == 404
    client.force_login(make_member(tree["acme"], Role.BILLING))
    assert client.get(page("list", tree["acme"]), query).status_code == 403
    client.force_login(make_member(tree["retail"], Role.VIEWER))  # retail sees W-2 only
    response = client.get(page("list", tree["retail"]), query)
    assert [device.serial for device in response.context["devices"]] == ["W-2"]
    assert client.get(page("list", tree["acme"]), query).status_code == 404


def queries(client: Any, url: str, **params: Any) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, params).status_code == 200
    return len(captured)


def test_the_health_column_costs_no_query_per_row(client, tree, fleet, viewer):
    client.force_login(viewer)
    few = queries(client, page("list", tree["acme"]))
    version = fleet["ok"].profile_version
    for index in range(30):
        device = make_device(
            tree["acme"], version, f"X-{index:02}", connectivity="online", last_seen_at=SEEN
        )
        if index % 3 == 0:
            alert(device, "minor", "open")

    assert queries(client, page("list", tree["acme"])) == few
    assert queries(client, page("list", tree["acme"]), health="warning") == few


def test_the_vitals_panel_costs_one_query_whatever_it_shows(client, tree, fleet, viewer):
    client.force_login(viewer)
    quiet = queries(client, page("device", tree["acme"], device_id=fleet["new"].pk))
    busy = queries(client, page("device", tree["acme"], device_id=fleet["ok"].pk))
    assert busy == quiet


def test_formatting_of_vitals_and_uptime():
    assert vitals_of({"cpu_temp_c": 48, "snr_db": 12.345, "mode": "eco", "x": True}) == [
        Vital("cpu_temp_c", "CPU temp", "48", "°C"),
        Vital("mode", "Mode", "eco", ""),
        Vital("snr_db", "SNR", "12.35", "dB"),
        Vital("x", "X", "True", ""),
    ]
    assert [number(v) for v in (1200, 0.5, -67.0, float("nan"))] == ["1,200", "0.5", "-67", "nan"]
    assert [duration(s) for s in (None, 0, 59, 3600, 3725, 93784, 86460)] == [
        "",
        "0 s",
        "59 s",
        "1 h",
        "1 h 2 min",
        "1 d 2 h",
        "1 d 1 min",
    ]
