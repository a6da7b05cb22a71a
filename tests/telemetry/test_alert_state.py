"""State-change rules through the outbox: the connectivity worker and the lifecycle write their
events, the ``alerting.state`` consumer is delivered them (the real ``deliver`` path), and the
alerts follow. Redelivery and reordering change nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core import events
from apps.core.actors import SYSTEM
from apps.core.models import DeliveryStatus, Event, EventDelivery
from apps.devices import services as device_services
from apps.devices.connectivity import StatusUpdate, connectivity_apply
from apps.devices.models import Device
from apps.telemetry.alerting.state import on_device_change, promote_pending
from apps.telemetry.models import Alert

from .alert_support import alert_events, condition, fresh_alert_cache, make_rule  # noqa: F401
from .conftest import make_device

OFFLINE = {"field": "connectivity", "to": "offline"}


def status(device: Device, state: str) -> None:
    payload = json.dumps({"state": state}).encode()
    update = StatusUpdate(f"devices/{device.pk}/status", payload, timezone.now())
    connectivity_apply(updates=[update])


def deliver_all() -> list[str]:
    """Deliver the pending ``alerting.state`` deliveries, oldest first, as the dispatcher
    would (lease, run, mark delivered in the handler's transaction)."""
    outcomes = []
    for row in EventDelivery.objects.filter(
        consumer="alerting.state", status=DeliveryStatus.PENDING
    ).order_by("id"):
        until = timezone.now() + timedelta(seconds=60)
        EventDelivery.objects.filter(pk=row.pk).update(lease_until=until)
        outcomes.append(str(events.deliver(events.Lease(row.pk, until))))
    return outcomes


def states() -> list[tuple[str, str]]:
    return [(a.status, a.message) for a in Alert.objects.order_by("opened_at", "id")]


@pytest.fixture
def online(tree, telemetry_version):
    device = make_device(telemetry_version, tree["acme"])
    Device.objects.filter(pk=device.pk).update(connectivity="online")
    return device


@pytest.mark.django_db
def test_going_offline_opens_and_coming_back_resolves(tree, online):
    make_rule(tree["acme"], "state_change", OFFLINE, severity="major")

    status(online, "offline")
    assert deliver_all() == ["delivered"]
    assert states() == [("open", "Connectivity offline (was online)")]

    status(online, "online")
    assert deliver_all() == ["delivered"]
    assert states() == [("resolved", "Connectivity offline (was online)")]
    assert [kind for kind, _ in alert_events()] == ["alert.opened", "alert.resolved"]


@pytest.mark.django_db
def test_a_redelivered_event_changes_nothing(tree, online):
    rule = make_rule(tree["acme"], "state_change", OFFLINE)
    status(online, "offline")
    deliver_all()
    offline_event = Event.objects.get(type="device.offline")
    before = condition(rule, online)

    on_device_change(offline_event)  # delivered again (at least once)

    assert condition(rule, online) == before
    assert states() == [("open", "Connectivity offline (was online)")]


@pytest.mark.django_db
def test_events_delivered_out_of_order_leave_the_truth(tree, online):
    make_rule(tree["acme"], "state_change", OFFLINE)
    status(online, "offline")
    status(online, "online")
    went_offline, came_back = Event.objects.filter(type__startswith="device.").order_by(
        "created_at", "id"
    )

    on_device_change(came_back)
    on_device_change(went_offline)  # older, and the device is online now

    assert states() == []


@pytest.mark.django_db
def test_offline_for_ten_minutes_opens_only_if_still_offline(tree, telemetry_version):
    long_gone, back_soon = (make_device(telemetry_version, tree["acme"]) for _ in range(2))
    Device.objects.filter(pk__in=[long_gone.pk, back_soon.pk]).update(connectivity="online")
    rule = make_rule(tree["acme"], "state_change", OFFLINE, open_after_seconds=600)
    status(long_gone, "offline")
    status(back_soon, "offline")
    deliver_all()
    went = Event.objects.filter(type="device.offline").earliest("created_at").created_at

    assert states() == []
    assert condition(rule, long_gone)[:2] == (False, went)
    status(back_soon, "online")
    deliver_all()
    assert promote_pending(now=went + timedelta(seconds=599)) == (0, 0)
    assert promote_pending(now=went + timedelta(seconds=601)) == (1, 0)
    assert [(a.device_id, a.status) for a in Alert.objects.all()] == [(long_gone.pk, "open")]


@pytest.mark.django_db
def test_clear_after_waits_before_resolving_a_state_alert(tree, online):
    make_rule(tree["acme"], "state_change", OFFLINE, clear_after_seconds=300)
    status(online, "offline")
    deliver_all()
    status(online, "online")
    deliver_all()
    back = Event.objects.get(type="device.online").created_at

    assert states() == [("open", "Connectivity offline (was online)")]
    assert promote_pending(now=back + timedelta(seconds=200)) == (0, 0)
    assert promote_pending(now=back + timedelta(seconds=300)) == (0, 1)


@pytest.mark.django_db
def test_a_device_in_maintenance_going_offline_opens_nothing(tree, online):
    rule = make_rule(tree["acme"], "state_change", OFFLINE)
    Device.objects.filter(pk=online.pk).update(state="maintenance")

    status(online, "offline")
    deliver_all()

    assert states() == []
    assert condition(rule, online)[:2] == (False, None)


@pytest.mark.django_db
def test_lifecycle_rules_follow_the_state_machine(tree, telemetry_version):
    device = make_device(telemetry_version, tree["acme"])
    make_rule(tree["acme"], "state_change", {"field": "state", "to": "suspended"})

    device_services.device_transition(actor=SYSTEM, device=device, transition="suspend")
    deliver_all()
    assert states() == [("open", "State suspended (was active)")]

    device_services.device_transition(actor=SYSTEM, device=device, transition="resume")
    deliver_all()
    assert states() == [("resolved", "State suspended (was active)")]


@pytest.mark.django_db
def test_the_from_value_narrows_the_transition(tree, telemetry_version):
    device = make_device(telemetry_version, tree["acme"])  # connectivity unknown
    make_rule(tree["acme"], "state_change", {**OFFLINE, "from": "online"})

    status(device, "offline")  # from unknown: not what the rule watches
    deliver_all()

    assert states() == []


# --- configuration drift (apps.configuration's sync status) ----------------------------------


def desired(device: Device, *, checksum: str = "c1", since_minutes: int = 0) -> None:
    from apps.configuration.models import DeviceConfigurationState

    DeviceConfigurationState.objects.create(
        device=device,
        organization_id=device.organization_id,
        desired_version=1,
        desired_checksum=checksum,
        out_of_sync_since=timezone.now() - timedelta(minutes=since_minutes),
    )


def report(device: Device, checksum: str, status: str = "applied", version: int = 1) -> None:
    from apps.configuration.reports import Report, reports_record

    reports_record(reports=[Report(device.pk, version, checksum, status, "", timezone.now())])


DRIFTED = {"field": "configuration", "to": "drifted"}


@pytest.mark.django_db
def test_configuration_drift_opens_an_alert_and_getting_in_sync_resolves_it(tree, online):
    from apps.configuration.reports import drift_sweep

    make_rule(tree["acme"], "state_change", DRIFTED, severity="minor")
    desired(online, since_minutes=30)  # pending for longer than the 10 minutes' tolerance

    assert drift_sweep() == 1
    assert deliver_all() == ["delivered"]
    assert states() == [("open", "Configuration drifted (was unknown)")]

    report(online, "c1")  # the device applied the desired configuration
    assert deliver_all() == ["delivered"]
    assert states() == [("resolved", "Configuration drifted (was unknown)")]


@pytest.mark.django_db
def test_a_failed_configuration_opens_an_error_rule_and_a_stale_drift_event_opens_nothing(
    tree, online
):
    from apps.configuration.reports import drift_sweep

    make_rule(tree["acme"], "state_change", {"field": "configuration", "to": "error"})
    drifted = make_rule(tree["acme"], "state_change", DRIFTED)
    desired(online, since_minutes=30)
    drift_sweep()
    report(online, "c0", status="error")  # before the drift event is delivered
    deliver_all()

    assert states() == [("open", "Configuration error (was unknown)")]
    assert condition(drifted, online)[:2] == (False, None)  # the device left "drifted"


@pytest.mark.django_db
def test_a_configuration_rule_takes_no_from_value(tree):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as refused:
        make_rule(tree["acme"], "state_change", {**DRIFTED, "from": "pending"})
    assert refused.value.message_dict == {
        "condition.from": ["Configuration rules watch where the status goes only: leave empty."]
    }
