"""Portal pages of configuration: the fleet overview, a device's page and panel, proposing a
change and a rollback (each a change request)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apps.accounts.roles import Role
from apps.changes.models import ChangeRequest
from apps.configuration.models import DeviceConfigurationState
from tests.factories import make_member

from .support import make_device, run, set_spec


def login(organization, role) -> Client:
    client = Client()
    client.force_login(make_member(organization, role))
    return client


@pytest.fixture
def fleet(tree, version):
    devices = [make_device(version, tree["acme"], serial=f"SN-{n}") for n in range(4)]
    run(tree["acme"], set_spec("organization", tree["acme"].pk, values={"brightness": 60}))
    now = timezone.now()
    DeviceConfigurationState.objects.filter(device=devices[0]).update(
        status="in_sync", out_of_sync_since=None
    )
    DeviceConfigurationState.objects.filter(device=devices[1]).update(
        status="drifted", out_of_sync_since=now - timedelta(hours=1)
    )
    DeviceConfigurationState.objects.filter(device=devices[2]).update(
        status="error", reported_error="disk full"
    )
    return devices


def test_the_overview_counts_devices_by_status_and_filters_them(tree, fleet):
    client = login(tree["acme"], Role.VIEWER)
    response = client.get(f"/o/{tree['acme'].pk}/configuration/")
    assert response.status_code == 200
    assert response.context["counts"] == {"in_sync": 1, "pending": 1, "drifted": 1, "error": 1}
    assert [state.device.serial for state in response.context["rows"]] == [
        "SN-3",
        "SN-2",
        "SN-1",
        "SN-0",
    ]
    assert [(row["kind"], row["name"], row["values"]) for row in response.context["layers"]] == [
        ("organization", "Acme", '{"brightness": 60}')
    ]
    drifted = client.get(f"/o/{tree['acme'].pk}/configuration/?status=drifted")
    assert [state.device.serial for state in drifted.context["rows"]] == ["SN-1"]
    assert (
        login(tree["acme"], Role.BILLING).get(f"/o/{tree['acme'].pk}/configuration/").status_code
        == 403
    )
    assert (
        login(tree["globex"], Role.OWNER).get(f"/o/{tree['acme'].pk}/configuration/").status_code
        == 404
    )


def test_the_device_page_and_panel_show_state_effective_and_history(tree, fleet):
    device = fleet[2]
    client = login(tree["acme"], Role.VIEWER)
    page = client.get(f"/configuration/devices/{device.pk}/")
    assert page.status_code == 200
    assert page.context["effective"].document["brightness"] == 60
    assert [row["version"].version for row in page.context["history"]] == [1]
    assert page.context["may_propose"] is False
    assert b"disk full" in page.content
    panel = client.get(f"/configuration/devices/{device.pk}/panel/")
    assert b'data-status="error"' in panel.content
    outsider = login(tree["globex"], Role.OWNER)
    assert outsider.get(f"/configuration/devices/{device.pk}/").status_code == 404
    assert outsider.get(f"/configuration/devices/{device.pk}/panel/").content == b""


def test_proposing_a_device_change_and_a_rollback_creates_change_requests(tree, fleet):
    device = fleet[0]
    operator = login(tree["acme"], Role.OPERATOR)
    url = f"/configuration/devices/{device.pk}/"
    bad = operator.post(url, {"action": "change", "title": "dim", "values": '{"brightness": 900}'})
    assert bad.status_code == 400
    assert ChangeRequest.objects.count() == 1  # only the fixture's
    response = operator.post(
        url, {"action": "change", "title": "dim", "values": '{"brightness": 20}'}
    )
    created = ChangeRequest.objects.latest("created_at")
    assert response.status_code == 302 and response["Location"] == f"/change-requests/{created.pk}/"
    assert (created.kind, created.spec["values"], created.target) == (
        "configuration",
        {"brightness": 20},
        {"device": str(device.pk)},
    )
    assert operator.post(url, {"action": "rollback", "version": "9"}).status_code == 400
    rollback = operator.post(url, {"action": "rollback", "version": "1"})
    created = ChangeRequest.objects.latest("created_at")
    assert (rollback.status_code, created.spec) == (
        302,
        {"operation": "rollback", "device": str(device.pk), "version": 1},
    )
    viewer = login(tree["acme"], Role.VIEWER)
    assert viewer.post(url, {"action": "rollback", "version": "1"}).status_code == 403
