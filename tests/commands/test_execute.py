"""The ``command`` kind: validation against the catalog, and execution (one command per device,
its downlink queued, nothing for devices that may not receive it)."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from apps.changes.choices import ChangeStatus
from apps.changes.models import ChangeRequest
from apps.changes.services import Refused
from apps.commands.models import Command
from apps.core.models import Event
from apps.devices.choices import DeviceState
from apps.devices.models import Downlink

from .support import commands_of, create, make_device, make_version, run

pytestmark = pytest.mark.django_db


def test_it_refuses_arguments_that_break_the_schema_and_creates_nothing(tree, devices):
    with pytest.raises(ValidationError) as raised:
        create(
            tree["acme"],
            {"device": str(devices[0].pk)},
            command="set_log_level",
            arguments={"level": "loud", "extra": 1},
        )
    assert raised.value.message_dict == {
        "arguments": [
            "(arguments): Additional properties are not allowed ('extra' was unexpected)",
            "level: 'loud' is not one of ['debug', 'info', 'warning']",
        ]
    }
    assert ChangeRequest.objects.count() == 0
    assert Command.objects.count() == 0
    assert Downlink.objects.count() == 0


@pytest.mark.parametrize(
    ("spec", "errors"),
    [
        (
            {"command": "explode"},
            {
                "command": [
                    "No command 'explode' in the catalog of the profiles of this organization."
                ]
            },
        ),
        ({"command": ""}, {"command": ["The name of a command of the profile's catalog."]}),
        ({"command": "ping", "arguments": []}, {"arguments": ["Must be a JSON object."]}),
        ({"command": "ping", "timeout_s": 0}, {"timeout_s": ["An integer from 1 to 86400."]}),
        ({"command": "ping", "colour": "red"}, {"spec": ["Unknown key 'colour'."]}),
        (
            {"command": "set_log_level"},
            {"arguments": ["(arguments): 'level' is a required property"]},
        ),
    ],
)
def test_it_refuses_a_bad_spec_with_a_clear_error(tree, devices, spec, errors):
    with pytest.raises(ValidationError) as raised:
        from apps.commands.kind import CommandKind

        CommandKind().validate(organization=tree["acme"], spec=spec)
    assert raised.value.message_dict == errors


def test_a_command_of_a_profile_not_usable_here_is_unknown(tree, devices):
    make_version(tree["globex"], "Globex sensor", [{"name": "explode", "schema": {}}])
    with pytest.raises(ValidationError) as raised:
        create(tree["acme"], {"device": str(devices[0].pk)}, command="explode")
    assert list(raised.value.message_dict) == ["command"]


def test_the_catalog_criticality_drives_the_policy(tree, devices):
    normal = create(tree["acme"], {"device": str(devices[0].pk)}, command="ping")
    critical = create(tree["acme"], {"device": str(devices[0].pk)}, command="reboot")
    assert (normal.status, normal.required_approvals) == (ChangeStatus.APPROVED, 0)
    assert (critical.status, critical.required_approvals) == (ChangeStatus.PENDING_APPROVAL, 1)


def test_executing_creates_one_command_per_device_and_queues_its_message(tree, devices):
    request = run(tree["acme"], devices, command="set_log_level", arguments={"level": "debug"})
    commands = commands_of(request)
    assert sorted(commands) == sorted(device.pk for device in devices)
    assert {(c.status, c.name, json.dumps(c.arguments), c.attempts) for c in commands.values()} == {
        ("queued", "set_log_level", '{"level": "debug"}', 1)
    }
    assert {c.organization_id for c in commands.values()} == {tree["acme"].pk, tree["retail"].pk}
    assert {c.expires_at for c in commands.values()} == {request.expires_at}
    downlinks = {row.ref_id: row for row in Downlink.objects.filter(ref_type="command")}
    assert sorted(downlinks) == sorted(str(c.pk) for c in commands.values())
    command = next(iter(commands.values()))
    row = downlinks[str(command.pk)]
    assert row.topic == f"devices/{command.device_id}/commands/{command.pk}"
    assert (row.state, row.retain, row.expires_at) == ("pending", False, request.expires_at)
    assert json.loads(bytes(row.payload)) == {
        "id": str(command.pk),
        "name": "set_log_level",
        "arguments": {"level": "debug"},
        "timeout_s": 300,
        "issued_at": command.issued_at.isoformat(),
        "expires_at": request.expires_at.isoformat(),
    }
    request.refresh_from_db()
    assert (request.status, request.device_count) == (ChangeStatus.EXECUTING, 4)


def test_a_device_whose_profile_version_lacks_the_command_fails_unsent(tree, devices):
    bare = make_device(make_version(tree["acme"], "Bare", []), tree["acme"])
    request = create(tree["acme"], {"filter": {"state": ["active"]}}, command="ping")
    from apps.changes.execution import change_request_execute
    from apps.core.actors import SYSTEM

    change_request_execute(actor=SYSTEM, request=request)
    commands = commands_of(request)
    assert commands[bare.pk].status == "failed"
    assert commands[bare.pk].error == "Bare v1 has no command 'ping' in its catalog."
    assert not Downlink.objects.filter(ref_id=str(commands[bare.pk].pk)).exists()
    assert Downlink.objects.filter(ref_type="command").count() == 4
    failed = Event.objects.get(type="command.failed")
    assert failed.subject_id == str(bare.pk)


def test_a_command_to_a_decommissioned_device_is_refused_and_nothing_is_sent(tree, devices):
    gone = devices[0]
    request = create(tree["acme"], {"device": str(gone.pk)})
    gone.state = DeviceState.DECOMMISSIONED
    gone.save(update_fields=["state"])
    from apps.changes.execution import change_request_execute
    from apps.core.actors import SYSTEM

    with pytest.raises(Refused) as raised:
        change_request_execute(actor=SYSTEM, request=request)
    assert raised.value.code == "decommissioned"
    assert Command.objects.count() == 0
    assert Downlink.objects.count() == 0


def test_the_dry_run_says_what_would_run_on_each_device(tree, devices):
    from apps.commands.kind import CommandKind

    bare = make_device(make_version(tree["acme"], "Bare", []), tree["acme"])
    request = create(tree["acme"], {"device": str(devices[0].pk)}, command="ping")
    previews = CommandKind().preview(request=request, device_ids=[devices[0].pk, bare.pk])
    assert [(p.serial, p.summary) for p in previews] == [
        (devices[0].serial, "will run ping {}"),
        (bare.serial, "will not run: Bare v1 has no command 'ping' in its catalog."),
    ]


def test_decommissioned_devices_of_a_filter_get_nothing(tree, devices):
    from apps.changes.execution import change_request_execute
    from apps.core.actors import SYSTEM

    devices[1].state = DeviceState.DECOMMISSIONED
    devices[1].save(update_fields=["state"])
    request = create(
        tree["acme"], {"filter": {"profile": [str(devices[0].profile_version.profile_id)]}}
    )
    change_request_execute(actor=SYSTEM, request=request)
    commands = commands_of(request)
    assert sorted(commands) == sorted(d.pk for d in devices if d.pk != devices[1].pk)
    assert not Downlink.objects.filter(device=devices[1]).exists()
    request.refresh_from_db()
    assert request.device_count == 3
