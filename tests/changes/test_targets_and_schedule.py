"""Targets (device, group, filter; frozen or dynamic; scope; decommissioned devices) and
scheduling (run_at, maintenance windows, run_due, expiry)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.accounts.roles import Role
from apps.changes import execution, services
from apps.changes.content import in_window, normalize_window
from apps.changes.models import ChangeRequest, ChangeRequestDevice
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, Event
from apps.devices import groups
from apps.devices.choices import DeviceState, GroupKind
from apps.devices.models import Device
from tests.factories import actor, make_member

pytestmark = pytest.mark.django_db


def create(who: Any, organization: Any, **overrides: Any) -> ChangeRequest:
    fields: dict[str, Any] = {
        "kind": "fake",
        "title": "Ping",
        "spec": {"action": "ping"},
        "target": {"filter": {}},
    }
    fields.update(overrides)
    return services.change_request_create(actor=who, organization=organization, **fields)


def executed_ids(fake: Any) -> list[Device]:
    return sorted(fake.executed[-1][1])


def test_a_filter_resolves_inside_the_organization_subtree(tree, fake, devices):
    operator = actor(make_member(tree["acme"], Role.OPERATOR))
    request = create(operator, tree["acme"])
    assert request.device_count == 4  # three of acme, one of retail; never globex's
    retail = create(operator, tree["retail"])
    assert retail.device_count == 1
    execution.change_request_execute(actor=operator, request=retail)
    assert executed_ids(fake) == [devices[3].pk]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"device": "globex"}, "Unknown device."),
        ({"group": "00000000-0000-0000-0000-000000000000"}, "Unknown group."),
        ({"filter": {"colour": ["red"]}}, "Invalid filter: colour: Unknown filter."),
        (
            {"device": "x", "group": "y"},
            'One of {"device": id}, {"group": id} or {"filter": {...}}.',
        ),
        ("everything", 'One of {"device": id}, {"group": id} or {"filter": {...}}.'),
    ],
)
def test_unknown_or_out_of_scope_targets_are_refused(tree, fake, devices, target, message):
    if target.get("device") == "globex" if isinstance(target, dict) else False:
        target = {"device": str(devices[4].pk)}  # a sibling's device: unknown, not forbidden
    operator = actor(make_member(tree["acme"], Role.OPERATOR))
    with pytest.raises(ValidationError) as raised:
        create(operator, tree["acme"], target=target)
    assert raised.value.message_dict == {"target": [message]}
    assert ChangeRequest.objects.count() == 0


def test_a_device_outside_the_request_organization_is_unknown(tree, fake, devices):
    operator = actor(make_member(tree["acme"], Role.OPERATOR))
    with pytest.raises(ValidationError) as raised:
        create(operator, tree["retail"], target={"device": str(devices[0].pk)})  # acme's
    assert raised.value.message_dict == {"target": ["Unknown device."]}


def test_frozen_targets_keep_their_devices_and_dynamic_ones_follow_the_fleet(
    tree, fake, devices, version
):
    acme = tree["acme"]
    operator = actor(make_member(acme, Role.OPERATOR))
    group = groups.group_create(
        actor=SYSTEM,
        organization=acme,
        name="Lobby",
        kind=GroupKind.DYNAMIC,
        filter={"tags_any": ["lobby"]},
    )
    Device.objects.filter(pk__in=[devices[0].pk, devices[1].pk]).update(tags=["lobby"])
    frozen = create(operator, acme, target={"group": str(group.pk)}, resolve_at="approval")
    dynamic = create(operator, acme, target={"group": str(group.pk)})
    assert sorted(
        ChangeRequestDevice.objects.filter(request=frozen).values_list("device_id", flat=True)
    ) == sorted([devices[0].pk, devices[1].pk])
    assert ChangeRequestDevice.objects.filter(request=dynamic).count() == 0
    # the fleet changes after submission
    Device.objects.filter(pk=devices[2].pk).update(tags=["lobby"])
    Device.objects.filter(pk=devices[0].pk).update(tags=[])
    execution.change_request_execute(actor=operator, request=frozen)
    assert executed_ids(fake) == sorted([devices[0].pk, devices[1].pk])
    execution.change_request_execute(actor=operator, request=dynamic)
    assert executed_ids(fake) == sorted([devices[1].pk, devices[2].pk])


def test_decommissioned_devices_never_receive_anything(tree, fake, devices):
    acme = tree["acme"]
    operator = actor(make_member(acme, Role.OPERATOR))
    request = create(operator, acme, resolve_at="approval")
    Device.objects.filter(pk=devices[1].pk).update(state=DeviceState.DECOMMISSIONED)
    Device.objects.filter(pk=devices[2].pk).update(state=DeviceState.REPLACED)
    execution.change_request_execute(actor=operator, request=request)
    assert executed_ids(fake) == sorted([devices[0].pk, devices[3].pk])
    request.refresh_from_db()
    assert request.device_count == 2


def test_a_decommissioned_single_device_is_a_clear_error_and_nothing_is_sent(tree, fake, devices):
    acme = tree["acme"]
    operator = actor(make_member(acme, Role.OPERATOR))
    request = create(operator, acme, target={"device": str(devices[0].pk)})
    Device.objects.filter(pk=devices[0].pk).update(state=DeviceState.DECOMMISSIONED)
    with pytest.raises(services.Refused) as refused:
        execution.change_request_execute(actor=operator, request=request)
    assert (refused.value.code, refused.value.message) == (
        "decommissioned",
        "The device is decommissioned or replaced: nothing sent.",
    )
    request.refresh_from_db()
    assert (request.status, fake.executed) == ("approved", [])


def test_a_target_resolving_to_no_device_is_a_clear_error(tree, fake, devices):
    operator = actor(make_member(tree["acme"], Role.OPERATOR))
    request = create(operator, tree["acme"], target={"filter": {"tags_all": ["nowhere"]}})
    assert request.device_count == 0
    with pytest.raises(services.Refused) as refused:
        execution.change_request_execute(actor=operator, request=request)
    assert refused.value.code == "no_devices"
    assert fake.executed == []


def test_preview_pages_the_devices_and_leaves_out_decommissioned_ones(tree, fake, devices):
    from apps.changes.selectors import change_request_preview

    acme = tree["acme"]
    operator = actor(make_member(acme, Role.OPERATOR))
    request = create(operator, acme)
    Device.objects.filter(pk=devices[3].pk).update(state=DeviceState.DECOMMISSIONED)
    first = change_request_preview(actor=operator, request=request, limit=2)
    ordered = sorted(d.pk for d in devices[:3])
    assert (first.total, first.excluded) == (3, 1)
    assert [p.device_id for p in first.devices] == ordered[:2]
    assert first.next_after == ordered[1]
    second = change_request_preview(
        actor=operator, request=request, after=first.next_after, limit=2
    )
    assert [p.device_id for p in second.devices] == ordered[2:]
    assert second.next_after is None
    assert fake.executed == []  # a dry run runs nothing


# --- schedule ----------------------------------------------------------------------------------


def test_a_request_for_later_is_scheduled_and_run_due_runs_it_when_due(tree, fake, devices):
    acme = tree["acme"]
    operator = actor(make_member(acme, Role.OPERATOR))
    run_at = timezone.now() + timedelta(hours=1)
    request = create(operator, acme, run_at=run_at)
    execution.change_request_execute(actor=operator, request=request)
    request.refresh_from_db()
    assert (request.status, fake.executed) == ("scheduled", [])
    assert execution.run_due(now=run_at - timedelta(seconds=1)) == 0
    assert execution.run_due(now=run_at) == 1
    assert execution.run_due(now=run_at) == 0  # once
    request.refresh_from_db()
    assert request.status == "executing"
    assert request.executed_by_id == operator.user_id
    assert executed_ids(fake) == sorted(d.pk for d in devices[:4])
    assert fake.executed[-1][2] == "scheduled change requests"


def test_a_window_holds_the_request_until_it_opens(tree, fake, devices):
    acme = tree["acme"]
    operator = actor(make_member(acme, Role.OPERATOR))
    window = {"days": ["mon"], "start": "02:00", "end": "04:00", "timezone": "Europe/Paris"}
    request = create(operator, acme, window=window)
    sunday_noon = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    execution.change_request_execute(actor=operator, request=request, now=sunday_noon)
    request.refresh_from_db()
    assert request.status == "scheduled"
    monday_0230_paris = datetime(2026, 11, 30, 1, 30, tzinfo=UTC)
    assert execution.run_due(now=monday_0230_paris - timedelta(hours=1)) == 0  # 01:30 Paris
    assert execution.run_due(now=monday_0230_paris) == 1


def test_a_scheduled_request_whose_devices_are_gone_is_cancelled_with_the_reason(
    tree, fake, devices
):
    acme = tree["acme"]
    operator = actor(make_member(acme, Role.OPERATOR))
    run_at = timezone.now() + timedelta(hours=1)
    request = create(operator, acme, run_at=run_at, target={"device": str(devices[0].pk)})
    execution.change_request_execute(actor=operator, request=request)
    Device.objects.filter(pk=devices[0].pk).update(state=DeviceState.DECOMMISSIONED)
    assert execution.run_due(now=run_at) == 0
    request.refresh_from_db()
    assert request.status == "cancelled"
    assert AuditLog.objects.get(action="changerequest.fail").changes == {
        "reason": "The device is decommissioned or replaced: nothing sent."
    }
    assert fake.executed == []


def test_expiry_marks_open_requests_only(tree, fake, devices):
    acme = tree["acme"]
    operator = actor(make_member(acme, Role.OPERATOR))
    soon = timezone.now() + timedelta(minutes=5)
    waiting = create(operator, acme, expires_at=soon, spec={"action": "x", "critical": True})
    running = create(operator, acme, expires_at=soon)
    execution.change_request_execute(actor=operator, request=running)
    assert execution.expire_due(now=soon) == 1
    waiting.refresh_from_db()
    running.refresh_from_db()
    assert (waiting.status, running.status) == ("expired", "executing")
    assert Event.objects.filter(type="changerequest.expired").count() == 1


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (datetime(2026, 11, 30, 22, 30, tzinfo=UTC), True),  # monday 23:30 Paris
        (datetime(2026, 11, 30, 23, 30, tzinfo=UTC), True),  # tuesday 00:30, from monday
        (datetime(2026, 12, 1, 0, 30, tzinfo=UTC), False),  # tuesday 01:30: closed
        (datetime(2026, 12, 1, 22, 30, tzinfo=UTC), False),  # tuesday 23:30: not a listed day
        (datetime(2026, 11, 30, 21, 59, tzinfo=UTC), False),  # monday 22:59
    ],
)
def test_a_window_spanning_midnight_belongs_to_its_start_day(moment, inside):
    window = normalize_window(
        {"days": ["mon"], "start": "23:00", "end": "01:00", "timezone": "Europe/Paris"}
    )
    assert in_window(window, moment) is inside


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"start": "25:00", "end": "01:00"}, "start must be a time, HH:MM."),
        ({"start": "01:00", "end": "01:00"}, "start and end must differ."),
        (
            {"start": "01:00", "end": "02:00", "timezone": "Mars/Olympus"},
            "Unknown time zone Mars/Olympus.",
        ),
        (
            {"days": ["someday"], "start": "01:00", "end": "02:00"},
            "days: a list of mon, tue, wed, thu, fri, sat, sun.",
        ),
        ({"when": "now"}, "Keys: days, start, end, timezone."),
    ],
)
def test_bad_windows_are_refused(window, message):
    with pytest.raises(ValidationError) as raised:
        normalize_window(window)
    assert raised.value.message_dict == {"window": [message]}
