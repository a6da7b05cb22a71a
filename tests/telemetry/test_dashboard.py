"""The fleet dashboard page and its map cells through the Django test client: anonymous -> the
sign-in page, another organization -> 404, a role without device.view -> 403, a reader -> the
exact counts of its own subtree, within a fixed query budget."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.accounts.roles import Role
from apps.core.models import Event
from apps.devices.models import Device
from apps.telemetry.models import Alert, AlertRule, LatestValues

from ..factories import make_member
from .analytics_support import Fleet, make_fleet, make_version, register

pytestmark = pytest.mark.django_db


def url(name: str, organization: Any) -> str:
    return reverse(f"analytics:{name}", kwargs={"organization_id": organization.pk})


@pytest.fixture
def fleet(tree) -> Fleet:
    found = make_fleet(tree)
    d = found.devices
    now = timezone.now()
    Device.objects.filter(pk=d["a1"].pk).update(
        connectivity="online", last_seen_at=now, firmware_version="1.2.0"
    )
    Device.objects.filter(pk=d["a2"].pk).update(
        connectivity="offline", last_seen_at=now, firmware_version="1.2.0"
    )
    Device.objects.filter(pk=d["r1"].pk).update(
        connectivity="online", last_seen_at=now, firmware_version="1.3.0"
    )
    Device.objects.filter(pk=d["g1"].pk).update(
        connectivity="online", last_seen_at=now, firmware_version="9.9.9"
    )
    rule = AlertRule.objects.create(organization=tree["acme"], name="Hot", kind="threshold")
    Alert.objects.create(
        organization=tree["retail"], rule=rule, device=d["r1"], severity="critical", message="hot"
    )
    Alert.objects.create(
        organization=tree["acme"],
        rule=rule,
        device=d["a1"],
        severity="warning",
        message="warm",
        status="acknowledged",
    )
    Alert.objects.create(
        organization=tree["acme"],
        rule=rule,
        device=d["a2"],
        severity="critical",
        message="old",
        status="resolved",
    )
    other = AlertRule.objects.create(organization=tree["globex"], name="G", kind="threshold")
    Alert.objects.create(
        organization=tree["globex"], rule=other, device=d["g1"], severity="major", message="x"
    )
    for organization, messages, minutes in (
        ("acme", 40, 1),
        ("retail", 20, 2),
        ("acme", 1000, 6),  # before the five-minute window
        ("globex", 500, 1),  # another organization's
    ):
        Event.objects.create(
            organization=tree[organization],
            type="telemetry.batch",
            payload={"messages": messages},
            created_at=now - timedelta(minutes=minutes),
        )
    return found


def test_an_anonymous_visitor_is_sent_to_sign_in(client, tree):
    page = url("dashboard", tree["acme"])
    response = client.get(page)
    assert (response.status_code, response.url) == (302, f"/accounts/login/?next={page}")


@pytest.mark.parametrize("name", ["dashboard", "map"])
def test_another_organization_is_not_found_and_billing_is_forbidden(client, tree, fleet, name):
    client.force_login(make_member(tree["globex"], Role.OWNER))
    assert client.get(url(name, tree["acme"])).status_code == 404
    client.force_login(make_member(tree["acme"], Role.BILLING))
    assert client.get(url(name, tree["acme"])).status_code == 403


def test_the_dashboard_counts_the_subtree_the_reader_sees(
    client, tree, fleet, django_assert_max_num_queries
):
    client.force_login(make_member(tree["acme"], Role.VIEWER))
    with django_assert_max_num_queries(16):
        response = client.get(url("dashboard", tree["acme"]))
    assert response.status_code == 200
    summary = response.context["summary"]
    # a1: online with a warning; a2: offline; r1: online with a critical; h1: never seen
    assert summary.health == {"ok": 0, "warning": 1, "critical": 1, "offline": 1, "unknown": 1}
    assert summary.devices == 4
    assert summary.firmware == [("1.2.0", 2), ("", 1), ("1.3.0", 1)]
    assert summary.alerts == {"critical": 1, "major": 0, "minor": 0, "warning": 1, "info": 0}
    assert summary.messages_per_minute == 12.0  # (40 + 20) / 5
    assert summary.ingest is None  # the whole installation's rate is for platform staff
    assert response.context["online"] == 2
    assert response.context["open_alerts"] == 2
    html = response.content.decode()
    assert 'data-stat="devices"><a href="/o/' in html
    assert [metric["value"] for metric in response.context["chart"]["metrics"]] == [
        "temperature",
        "door_open",
    ]


def test_the_query_count_does_not_grow_with_the_fleet(client, tree, fleet):
    client.force_login(make_member(tree["acme"], Role.VIEWER))
    page = url("dashboard", tree["acme"])
    client.get(page)  # warm the per-process caches (content types)
    with CaptureQueriesContext(connection) as before:
        client.get(page)
    version = make_version(tree["acme"], "Extra")
    for index in range(12):
        device = register(version, tree["hospital" if index % 2 else "retail"], f"X-{index}")
        Device.objects.filter(pk=device.pk).update(firmware_version=f"2.{index % 5}")
    with CaptureQueriesContext(connection) as after:
        response = client.get(page)
    assert response.context["summary"].devices == 16
    assert len(after.captured_queries) == len(before.captured_queries)


def test_a_child_organization_sees_only_its_own(client, tree, fleet):
    client.force_login(make_member(tree["retail"], Role.OPERATOR))
    response = client.get(url("dashboard", tree["retail"]))
    summary = response.context["summary"]
    assert (summary.devices, summary.firmware) == (1, [("1.3.0", 1)])
    assert summary.alerts == {"critical": 1, "major": 0, "minor": 0, "warning": 0, "info": 0}
    assert summary.messages_per_minute == 4.0


def test_the_map_gathers_devices_into_cells(client, tree, fleet):
    client.force_login(make_member(tree["acme"], Role.VIEWER))
    whole = client.get(url("map", tree["acme"])).json()
    assert whole["extent"] == [-33.9, -70.6, 48.85, 151.2]
    assert whole["zoom"] == 1
    assert [(cell["devices"], cell["online"]) for cell in whole["cells"]] == [
        (2, 1),
        (1, 0),
        (1, 1),
    ]
    close = client.get(url("map", tree["acme"]), {"zoom": "12", "bbox": "48,2,49,3"}).json()
    d = fleet.devices
    assert sorted((cell["label"], cell["url"]) for cell in close["cells"]) == [
        ("SN-A1", f"/o/{tree['acme'].pk}/devices/{d['a1'].pk}/"),
        ("SN-A2", f"/o/{tree['acme'].pk}/devices/{d['a2'].pk}/"),
    ]
    assert close["extent"] is None


def test_platform_staff_also_see_the_ingest_rate(client, tree, fleet, admin_user):
    client.force_login(admin_user)
    response = client.get(url("dashboard", tree["acme"]))
    ingest = response.context["summary"].ingest
    # no ingest worker reports under this test run's key prefix
    assert (ingest["workers"], ingest["messages_per_second"]) == (0, 0)
    assert 'data-stat="ingest">0<span class="stat-unit">msg/s</span>' in response.content.decode()


def test_the_device_chart_opens_on_a_metric_the_device_reported(client, tree, fleet):
    a1 = fleet.devices["a1"]
    LatestValues.objects.create(
        device=a1, metrics={"door_open": True}, vitals={"rssi_dbm": -70.0, "battery_pct": 80.0}
    )
    page = reverse("fleet:device", kwargs={"organization_id": tree["acme"].pk, "device_id": a1.pk})
    client.force_login(make_member(tree["acme"], Role.VIEWER))
    html = client.get(page).content.decode()
    options = [
        line.split('value="')[1].split('"')[0]
        for line in html.split("<option")[1:]
        if 'data-unit="' in line
    ]
    assert options == [
        "temperature",
        "door_open",
        "vitals.battery_pct",
        "vitals.rssi_dbm",
        "vitals.uptime_s",
    ]
    assert '<option value="door_open" data-unit="" selected>' in html
    assert f'"live": "/ws/telemetry/devices/{a1.pk}/"' in html
    csv_link = 'data-chart-csv href="/api/v1/telemetry/aggregate/export/"'
    assert csv_link not in html  # a viewer may not export
    client.force_login(make_member(tree["acme"], Role.OPERATOR))
    assert csv_link in client.get(page).content.decode()
