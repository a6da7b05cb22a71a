"""The device side: checksum pull over HTTPS, reports (HTTPS and the uplink handler), drift."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.configuration.documents import canonical_checksum
from apps.configuration.models import ConfigurationVersion, DeviceConfigurationState
from apps.configuration.reports import drift_sweep
from apps.configuration.uplink import handle_reported
from apps.core.models import Event
from apps.devices.uplinks import Uplink, handler_for
from tests.broker_support import create_token

from .support import make_device, run, set_spec

BASE = {"brightness": 50, "locale": "en", "network": {"apn": "internet"}}


def client_of(device) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {create_token(device)}")
    return client


def uplink(device, document, at=None) -> Uplink:
    return Uplink(
        device_id=device.pk,
        organization_id=device.organization_id,
        device_state=device.state,
        subtopic="config/reported",
        document=document,
        received_at=at or timezone.now(),
        source="mqtt",
    )


def state_of(device) -> tuple:
    state = DeviceConfigurationState.objects.get(device=device)
    return (
        state.status,
        state.desired_version,
        state.reported_version,
        state.reported_status,
        state.reported_error,
    )


def test_the_pull_answers_the_document_then_304_while_the_checksum_holds(tree, version):
    device = make_device(version, tree["acme"])
    client = client_of(device)
    first = client.get("/device/v1/configuration")
    checksum = canonical_checksum(BASE)
    assert (first.status_code, first.json(), first["ETag"]) == (
        200,
        {"version": 1, "checksum": checksum, "configuration": BASE},
        f'"{checksum}"',
    )
    assert ConfigurationVersion.objects.filter(device=device).count() == 1  # computed on first use
    assert (
        client.get("/device/v1/configuration", HTTP_IF_NONE_MATCH=f'"{checksum}"').status_code
        == 304
    )
    assert client.get(f"/device/v1/configuration?checksum={checksum}").status_code == 304
    run(tree["acme"], set_spec("device", device.pk, values={"brightness": 70}))
    changed = client.get(f"/device/v1/configuration?checksum={checksum}")
    expected = {**BASE, "brightness": 70}
    assert (changed.status_code, changed.json()) == (
        200,
        {"version": 2, "checksum": canonical_checksum(expected), "configuration": expected},
    )
    assert APIClient().get("/device/v1/configuration").status_code == 401


def test_a_report_over_https_moves_the_state_and_a_bad_one_names_its_field(tree, version):
    device = make_device(version, tree["acme"])
    client = client_of(device)
    desired = client.get("/device/v1/configuration").json()
    bad = client.post(
        "/device/v1/config/reported",
        {"version": 1, "checksum": "xyz", "status": "applied"},
        format="json",
    )
    assert (bad.status_code, bad.json()["error"]["fields"]) == (
        400,
        {"checksum": ["must be 64 lowercase hexadecimal digits."]},
    )
    ok = client.post(
        "/device/v1/config/reported",
        {"version": 1, "checksum": desired["checksum"], "status": "applied"},
        format="json",
    )
    assert (ok.status_code, ok.json()) == (202, {"accepted": 1})
    assert state_of(device) == ("in_sync", 1, 1, "applied", "")
    assert list(
        Event.objects.filter(type="configuration.in_sync").values_list("subject_id", "payload")
    ) == [(str(device.pk), {"device": str(device.pk), "version": 1, "error": ""})]


@pytest.mark.parametrize(
    ("reports", "expected"),
    [
        ([("v1", "applied", "")], ("in_sync", 1, 1, "applied", "")),
        ([("v1", "error", "disk full")], ("error", 1, 1, "error", "disk full")),
        ([("old", "applied", "")], ("pending", 1, 0, "applied", "")),
        ([("v1", "applied", ""), ("v1", "applied", "")], ("in_sync", 1, 1, "applied", "")),
        ([("v1", "error", "x"), ("v1", "applied", "")], ("in_sync", 1, 1, "applied", "")),
    ],
    ids=["applied", "error", "an older document", "a redelivery", "error then applied"],
)
def test_reports_through_the_uplink_handler(tree, version, reports, expected):
    device = make_device(version, tree["acme"])
    run(tree["acme"], set_spec("device", device.pk, values={"brightness": 1}))
    checksums = {
        "v1": canonical_checksum({**BASE, "brightness": 1}),
        "old": canonical_checksum(BASE),
    }
    now = timezone.now()
    for index, (which, status, error) in enumerate(reports):
        number = 1 if which == "v1" else 0
        document = {
            "version": number,
            "checksum": checksums[which],
            "status": status,
            "error": error,
        }
        assert handle_reported([uplink(device, document, now + timedelta(seconds=index))]) == []
    assert state_of(device) == expected


def test_the_handler_is_routed_and_refuses_a_malformed_report(tree, version):
    device = make_device(version, tree["acme"])
    assert handler_for("config/reported") == ("configuration", handle_reported)
    bad = uplink(device, {"version": "one", "checksum": "0" * 64, "status": "applied"})
    assert handle_reported([bad]) == [(bad, "invalid", "version: must be a non-negative integer.")]


def test_the_sweep_marks_devices_drifted_after_the_tolerance_once(tree, version, settings):
    settings.CONFIGURATION_DRIFT_TOLERANCE_SECONDS = 600
    late, fresh, synced = (make_device(version, tree["acme"]) for _ in range(3))
    run(tree["acme"], set_spec("organization", tree["acme"].pk, values={"brightness": 1}))
    now = timezone.now()
    DeviceConfigurationState.objects.filter(device=late).update(
        out_of_sync_since=now - timedelta(minutes=11)
    )
    DeviceConfigurationState.objects.filter(device=fresh).update(
        out_of_sync_since=now - timedelta(minutes=9)
    )
    DeviceConfigurationState.objects.filter(device=synced).update(
        status="in_sync", out_of_sync_since=None
    )
    assert drift_sweep(now=now) == 1
    assert drift_sweep(now=now) == 0
    statuses = dict(DeviceConfigurationState.objects.values_list("device_id", "status"))
    assert statuses == {late.pk: "drifted", fresh.pk: "pending", synced.pk: "in_sync"}
    event = Event.objects.get(type="configuration.drifted")
    assert (
        event.subject_id,
        event.payload["desired_version"],
        event.payload["reported_version"],
    ) == (str(late.pk), 1, None)
    # the device catches up: in sync again, and said so
    checksum = canonical_checksum({**BASE, "brightness": 1})
    handle_reported([uplink(late, {"version": 1, "checksum": checksum, "status": "applied"})])
    assert state_of(late) == ("in_sync", 1, 1, "applied", "")
    assert Event.objects.filter(type="configuration.in_sync", subject_id=str(late.pk)).count() == 1
