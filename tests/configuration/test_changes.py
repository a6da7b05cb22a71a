"""Configuration change requests: validate, preview, execute (versions, desired state, retained
downlink), rollback, and what the approval policy sees."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from apps.changes import execution, selectors
from apps.changes.choices import ChangeStatus
from apps.changes.models import ChangeRequest
from apps.configuration.documents import canonical_checksum
from apps.configuration.models import (
    ConfigurationVersion,
    DeviceConfiguration,
    DeviceConfigurationState,
    GroupConfiguration,
    OrganizationConfiguration,
)
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog
from apps.devices.choices import DeviceState
from apps.devices.models_downlink import Downlink

from .support import create, make_device, make_group, run, set_spec

BASE = {"brightness": 50, "locale": "en", "network": {"apn": "internet"}}


def _versions(device) -> list[tuple[int, dict]]:
    return list(
        ConfigurationVersion.objects.filter(device=device)
        .order_by("version")
        .values_list("version", "document")
    )


def test_a_group_change_gives_each_member_a_version_a_desired_state_and_a_retained_message(
    tree, version, django_capture_on_commit_callbacks
):
    members = [make_device(version, tree["acme"]) for _ in range(3)]
    outsider = make_device(version, tree["acme"])
    retired = make_device(version, tree["acme"], state=DeviceState.DECOMMISSIONED)
    group = make_group(tree["acme"], "lobby", [*members, retired])
    with django_capture_on_commit_callbacks(execute=True):
        request = run(
            tree["acme"], set_spec("group", group.pk, values={"brightness": 75}, priority=3)
        )
    expected = {**BASE, "brightness": 75}
    checksum = canonical_checksum(expected)
    for device in members:
        assert _versions(device) == [(1, expected)]
        state = DeviceConfigurationState.objects.get(device=device)
        assert (state.desired_version, state.desired_checksum, state.status) == (
            1,
            checksum,
            "pending",
        )
        message = Downlink.objects.get(device=device)
        assert (message.topic, message.retain, message.ref_type, message.ref_id) == (
            f"devices/{device.pk}/config/desired",
            True,
            "configuration",
            f"{device.pk}:1",
        )
        assert json.loads(bytes(message.payload)) == {
            "version": 1,
            "checksum": checksum,
            "configuration": expected,
        }
    assert _versions(outsider) == [] and _versions(retired) == []
    layer = GroupConfiguration.objects.get(group=group)
    assert (layer.priority, layer.values) == (3, {"brightness": 75})
    request.refresh_from_db()
    assert request.status == ChangeStatus.COMPLETED
    assert ConfigurationVersion.objects.filter(change_request=request).count() == 3
    assert (
        AuditLog.objects.filter(
            action="configuration.layer_changed", object_id=str(layer.pk)
        ).count()
        == 1
    )


def test_an_unchanged_effective_configuration_gets_no_new_version_and_no_message(tree, version):
    device = make_device(version, tree["acme"])
    run(tree["acme"], set_spec("device", device.pk, values={"locale": "fr"}))
    run(tree["acme"], set_spec("organization", tree["acme"].pk, values={"locale": "de"}))
    # the device override still wins: nothing changes for this device
    assert [number for number, _ in _versions(device)] == [1]
    assert Downlink.objects.filter(device=device).count() == 1
    run(tree["acme"], set_spec("device", device.pk, unset=["locale"]))
    assert _versions(device)[-1] == (2, {**BASE, "locale": "de"})
    assert DeviceConfiguration.objects.get(device=device).overrides == {}


def test_a_newer_version_supersedes_the_unpublished_message(tree, version):
    device = make_device(version, tree["acme"])
    run(tree["acme"], set_spec("device", device.pk, values={"brightness": 10}))
    run(tree["acme"], set_spec("device", device.pk, values={"brightness": 20}))
    assert list(
        Downlink.objects.filter(device=device).order_by("id").values_list("state", "ref_id")
    ) == [
        ("superseded", f"{device.pk}:1"),
        ("pending", f"{device.pk}:2"),
    ]


@pytest.mark.parametrize(
    ("spec", "errors"),
    [
        ({"operation": "merge"}, {"operation": ["One of: set, rollback."]}),
        (
            {"operation": "set", "layer": "site", "layer_id": "x"},
            {"layer": ["One of: organization, group, device."]},
        ),
        (
            {"operation": "set", "layer": "device", "layer_id": "nope", "values": {"a": 1}},
            {"layer_id": ["Must be an id."]},
        ),
        (
            {"operation": "set", "layer": "organization", "layer_id": "GLOBEX", "values": {"a": 1}},
            {"layer_id": ["Unknown organization."]},
        ),
        (
            {"operation": "set", "layer": "organization", "layer_id": "ACME"},
            {"values": ["Nothing to change: give values, unset, variables or unset_variables."]},
        ),
        (
            {"operation": "set", "layer": "organization", "layer_id": "ACME", "unset": ["a..b"]},
            {"unset": ["Must be a list of dotted paths such as network.wifi.ssid."]},
        ),
        (
            {
                "operation": "set",
                "layer": "organization",
                "layer_id": "ACME",
                "values": {"a": 1},
                "priority": 2,
            },
            {"priority": ["Only a group layer has a priority."]},
        ),
        (
            {
                "operation": "set",
                "layer": "organization",
                "layer_id": "ACME",
                "values": {"a": 1},
                "extra": 1,
            },
            {"extra": ["Unknown field."]},
        ),
        (
            {"operation": "rollback", "device": "DEVICE", "version": 9},
            {"version": ["This device has no such version."]},
        ),
    ],
)
def test_a_bad_spec_is_refused_with_a_clear_error(tree, version, spec, errors):
    device = make_device(version, tree["acme"])
    ids = {"ACME": str(tree["acme"].pk), "GLOBEX": str(tree["globex"].pk), "DEVICE": str(device.pk)}
    spec = {
        key: ids.get(value, value) if isinstance(value, str) else value
        for key, value in spec.items()
    }
    with pytest.raises(ValidationError) as raised:
        create(tree["acme"], spec, target={"device": str(device.pk)})
    assert raised.value.message_dict == errors
    assert ChangeRequest.objects.count() == 0


def test_configuration_that_breaks_the_schema_is_refused_per_device_and_nothing_is_written(
    tree, version
):
    first = make_device(version, tree["acme"], serial="SN-1")
    second = make_device(version, tree["acme"], serial="SN-2")
    DeviceConfiguration.objects.create(
        organization=tree["acme"], device=second, overrides={"port": 1}
    )
    spec = set_spec(
        "organization", tree["acme"].pk, values={"brightness": 101, "port": "{{ var.port }}"}
    )
    with pytest.raises(ValidationError) as raised:
        create(tree["acme"], spec)
    assert raised.value.message_dict == {
        "values": [
            "SN-1: Unknown variable 'var.port' at port.",
            "SN-2: brightness: 101 is greater than the maximum of 100",
        ]
    }
    assert (
        ChangeRequest.objects.count(),
        OrganizationConfiguration.objects.count(),
        ConfigurationVersion.objects.count(),
    ) == (0, 0, 0)
    assert first.pk != second.pk


def test_the_dry_run_shows_each_devices_diff(tree, version):
    make_device(version, tree["acme"], serial="SN-1")
    untouched = make_device(version, tree["acme"], serial="SN-2")
    DeviceConfiguration.objects.create(
        organization=tree["acme"], device=untouched, overrides={"brightness": 5}
    )
    spec = set_spec(
        "organization",
        tree["acme"].pk,
        values={"brightness": 60, "network": {"mtu": 1200}},
        unset=["locale"],
    )
    request = create(tree["acme"], spec)
    preview = selectors.change_request_preview(actor=SYSTEM, request=request)
    by_serial = {item.serial: (item.summary, item.diff) for item in preview.devices}
    assert by_serial == {
        "SN-1": (
            "2 changes",
            [
                {"op": "replace", "path": "brightness", "from": 50, "to": 60},
                {"op": "add", "path": "network.mtu", "from": None, "to": 1200},
            ],
        ),
        "SN-2": ("1 change", [{"op": "add", "path": "network.mtu", "from": None, "to": 1200}]),
    }
    assert OrganizationConfiguration.objects.count() == 0  # a dry run writes nothing


def test_a_critical_key_needs_an_approval_and_others_do_not(tree, version):
    device = make_device(version, tree["acme"])
    plain = create(tree["acme"], set_spec("device", device.pk, values={"brightness": 1}))
    critical = create(
        tree["acme"], set_spec("device", device.pk, values={"network": {"apn": "iot"}})
    )
    assert (plain.status, plain.required_approvals) == (ChangeStatus.APPROVED, 0)
    assert (critical.status, critical.required_approvals) == (ChangeStatus.PENDING_APPROVAL, 1)
    facts = execution.kinds.get("configuration").facts(request=critical)
    assert (facts.configuration_keys, facts.critical_configuration_keys) == (
        frozenset({"network", "network.apn"}),
        frozenset({"network", "network.apn"}),
    )
    assert facts.profile_ids == frozenset({version.profile_id})


def test_rolling_back_pins_the_old_document_as_a_new_version_until_the_next_device_change(
    tree, version
):
    device = make_device(version, tree["acme"])
    run(tree["acme"], set_spec("device", device.pk, values={"brightness": 10}))
    run(tree["acme"], set_spec("device", device.pk, values={"brightness": 20}))
    request = create(
        tree["acme"], {"operation": "rollback", "device": str(device.pk), "version": 1}
    )
    preview = selectors.change_request_preview(actor=SYSTEM, request=request)
    assert [item.diff for item in preview.devices] == [
        [{"op": "replace", "path": "brightness", "from": 20, "to": 10}]
    ]
    execution.change_request_execute(actor=SYSTEM, request=request)
    assert _versions(device)[-1] == (3, {**BASE, "brightness": 10})
    assert DeviceConfiguration.objects.get(device=device).pinned_version == 1
    run(tree["acme"], set_spec("organization", tree["acme"].pk, values={"locale": "fr"}))
    assert len(_versions(device)) == 3  # pinned: organization changes do not move it
    run(tree["acme"], set_spec("device", device.pk, values={"brightness": 30}))
    assert _versions(device)[-1] == (4, {**BASE, "brightness": 30, "locale": "fr"})


def test_progress_counts_the_devices_by_sync_status(tree, version):
    devices = [make_device(version, tree["acme"]) for _ in range(2)]
    request = run(tree["acme"], set_spec("organization", tree["acme"].pk, values={"brightness": 1}))
    DeviceConfigurationState.objects.filter(device=devices[0]).update(status="in_sync")
    assert execution.kinds.get("configuration").progress(request=request) == {
        "total": 2,
        "pending": 1,
        "in_sync": 1,
        "drifted": 0,
        "error": 0,
        "superseded": 0,
    }
