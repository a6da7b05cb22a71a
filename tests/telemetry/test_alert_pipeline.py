"""Alerting end to end through the ingest pipeline: raw uplink messages into ``process_batch``,
alerts out, in the pipeline's own transaction. Duplicates are never evaluated again; late data
is stored but opens nothing; maintenance stores and suppresses."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.devices.choices import DeviceState
from apps.devices.models import Device
from apps.telemetry.models import Alert
from apps.telemetry.pipeline import process_batch

from .alert_support import alert_events, condition, fresh_alert_cache, make_rule  # noqa: F401
from .conftest import make_device, message

pytestmark = pytest.mark.django_db


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def ago(seconds: float) -> dt.datetime:
    return timezone.now().replace(microsecond=0) - dt.timedelta(seconds=seconds)


def statuses() -> list[tuple[str, str]]:
    return [(a.status, a.message) for a in Alert.objects.order_by("opened_at", "id")]


def test_a_hot_sample_opens_a_redelivery_does_nothing_and_a_cool_one_resolves(tree, device):
    rule = make_rule(tree["acme"], name="Hot")
    hot = message(device, boot=1, seq=1, ts=iso(ago(60)), metrics={"temperature": 85})

    first = process_batch([hot])
    assert (first.stored, first.alerts_opened, first.alerts_resolved) == (1, 1, 0)
    seen = condition(rule, device)

    again = process_batch([hot])  # the broker delivered it twice
    assert (again.duplicates, again.alerts_opened, again.alerts_resolved) == (1, 0, 0)
    assert condition(rule, device) == seen

    cool = message(device, boot=1, seq=2, ts=iso(ago(30)), metrics={"temperature": 20})
    last = process_batch([cool])
    assert (last.alerts_opened, last.alerts_resolved) == (0, 1)
    assert statuses() == [("resolved", "temperature 85.0 > 80")]
    assert [kind for kind, _ in alert_events()] == ["alert.opened", "alert.resolved"]


def test_heartbeat_vitals_and_events_reach_their_rules(tree, device):
    make_rule(
        tree["acme"], condition={"metric": "battery_pct", "operator": "lt", "value": 20}, name="Low"
    )
    make_rule(tree["acme"], "event_match", {"type": "door.*", "min_severity": "error"}, name="Door")
    beat = message(
        device, "heartbeat", boot=1, seq=1, ts=iso(ago(20)), uptime_s=60, vitals={"battery_pct": 9}
    )
    door = message(
        device, "events", boot=1, seq=1, ts=iso(ago(10)), type="door.forced", severity="critical"
    )

    result = process_batch([beat, door])

    assert (result.alerts_opened, result.alerts_resolved) == (2, 0)
    assert sorted(statuses()) == [("open", "battery_pct 9 < 20"), ("open", "door.forced")]


def test_late_data_is_stored_but_opens_nothing(tree, device, settings):
    settings.ALERT_LATE_DATA_SECONDS = 300
    make_rule(tree["acme"])
    late = message(device, boot=1, seq=1, ts=iso(ago(900)), metrics={"temperature": 99})

    result = process_batch([late])

    assert (result.stored, result.alerts_opened) == (1, 0)
    assert statuses() == []


def test_a_device_in_maintenance_is_stored_and_raises_nothing(tree, telemetry_version):
    device = make_device(telemetry_version, tree["acme"], state=DeviceState.MAINTENANCE)
    make_rule(tree["acme"])

    result = process_batch(
        [message(device, boot=1, seq=1, ts=iso(ago(5)), metrics={"temperature": 99})]
    )

    assert (result.stored, result.alerts_opened) == (1, 0)
    assert Device.objects.get(pk=device.pk).state == "maintenance"
    assert statuses() == []
