"""Periodic rule kinds: missing data, missed heartbeats, a fleet's share offline. Each case
sets the database state (latest values, stored samples, connectivity) and runs the evaluation at
chosen moments, then checks the exact alerts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.db import connection
from django.utils import timezone

from apps.devices.choices import DeviceState
from apps.devices.models import Device
from apps.telemetry.alerting import periodic
from apps.telemetry.models import Alert, LatestValues

from .alert_support import condition, fresh_alert_cache, make_rule  # noqa: F401
from .conftest import make_device, make_version


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def store_sample(device: Device, ts: Any, **metrics: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO telemetry_sample (device_id, ts, kind, boot, seq, idx, received_at, "
            "metrics) VALUES (%s, %s, 1, 1, %s, 0, %s, %s::jsonb)",
            [device.pk, ts, int(ts.timestamp() * 1000), ts, orjson.dumps(metrics).decode()],
        )


def latest(device: Device, **fields: Any) -> None:
    LatestValues.objects.update_or_create(device=device, defaults=fields)


def open_alerts() -> list[tuple[str, str]]:
    return sorted(
        (alert.device.serial if alert.device else "fleet", alert.message)
        for alert in Alert.objects.select_related("device").exclude(status="resolved")
    )


@pytest.fixture
def now():
    """A moment after the test's rules were created (their creation is the grace start)."""
    return timezone.now() + minutes(30)


# --- missing data ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_missing_telemetry_opens_after_the_silence_and_resolves_when_data_comes(
    tree, telemetry_version, now
):
    silent, chatty, never = (make_device(telemetry_version, tree["acme"]) for _ in range(3))
    Device.objects.filter(pk=never.pk).update(state_changed_at=now - minutes(20))
    make_rule(tree["acme"], "missing_data", {"seconds": 600})
    latest(silent, metrics={"temperature": 20}, metrics_at=now - seconds(700))
    latest(chatty, metrics={"temperature": 20}, metrics_at=now - seconds(30))

    assert periodic.missing_data(now=now) == (2, 0)
    assert open_alerts() == sorted(
        [
            (silent.serial, "No telemetry for 700 s (limit 600 s)"),
            (never.serial, "No telemetry for 1200 s (limit 600 s)"),
        ]
    )
    assert periodic.missing_data(now=now) == (0, 0)  # idempotent

    latest(silent, metrics={"temperature": 21}, metrics_at=now + seconds(10))
    assert periodic.missing_data(now=now + seconds(20)) == (0, 1)
    assert open_alerts() == [(never.serial, "No telemetry for 1200 s (limit 600 s)")]


@pytest.mark.django_db
def test_missing_metric_looks_for_that_metric_in_the_window(tree, telemetry_version):
    now = timezone.now().replace(microsecond=0)
    humid, dry, paused = (make_device(telemetry_version, tree["acme"]) for _ in range(3))
    Device.objects.filter(pk__in=[humid.pk, dry.pk, paused.pk]).update(
        state_changed_at=now - minutes(60)
    )
    Device.objects.filter(pk=paused.pk).update(state=DeviceState.MAINTENANCE)
    rule = make_rule(tree["acme"], "missing_data", {"metric": "humidity", "seconds": 300})
    store_sample(humid, now - seconds(100), humidity=40)
    store_sample(dry, now - seconds(100), temperature=20)  # telemetry, but not that metric
    store_sample(dry, now - seconds(400), humidity=38)  # that metric, but too long ago
    # the rule's own creation is the grace start: pretend it was made an hour ago
    type(rule).objects.filter(pk=rule.pk).update(created_at=now - minutes(60))

    assert periodic.missing_data(now=now) == (1, 0)
    assert open_alerts() == [(dry.serial, "No humidity for over 300 s")]
    assert condition(rule, paused) == (False, None, None, now)  # maintenance: observed, no breach


@pytest.mark.django_db
def test_a_new_rule_gives_devices_its_whole_window_first(tree, telemetry_version):
    device = make_device(telemetry_version, tree["acme"])
    Device.objects.filter(pk=device.pk).update(state_changed_at=timezone.now() - minutes(600))
    make_rule(tree["acme"], "missing_data", {"seconds": 600})

    assert periodic.missing_data(now=timezone.now() + seconds(590)) == (0, 0)
    assert periodic.missing_data(now=timezone.now() + seconds(610)) == (1, 0)


@pytest.mark.django_db
def test_periodic_rules_honour_open_after(tree, telemetry_version, now):
    device = make_device(telemetry_version, tree["acme"])
    rule = make_rule(tree["acme"], "missing_data", {"seconds": 60}, open_after_seconds=120)
    latest(device, metrics={"t": 1}, metrics_at=now - seconds(61))

    assert periodic.missing_data(now=now) == (0, 0)
    assert condition(rule, device) == (False, now, None, now)
    assert periodic.missing_data(now=now + seconds(119)) == (0, 0)
    assert periodic.missing_data(now=now + seconds(120)) == (1, 0)


# --- missed heartbeats -------------------------------------------------------------------------


@pytest.mark.django_db
def test_missed_heartbeats_follow_each_devices_policy(tree, now, settings):
    settings.TELEMETRY_LAST_SEEN_GRANULARITY = 15
    version = make_version(tree["acme"], name="Beacon")
    type(version).objects.filter(pk=version.pk).update(
        heartbeat_interval_seconds=60, heartbeat_missed_beats=3
    )
    late, on_time, fast_late, fast_on_time, paused = (
        make_device(version, tree["acme"]) for _ in range(5)
    )
    fast = {"heartbeat": {"interval_seconds": 10, "missed_beats": 2}}
    Device.objects.filter(pk__in=[fast_late.pk, fast_on_time.pk]).update(provisioning=fast)
    Device.objects.filter(pk=paused.pk).update(state=DeviceState.MAINTENANCE)
    for device, silent in [
        (late, 196),  # 60 x 3 + 15 = 195 s allowed
        (on_time, 190),
        (fast_late, 36),  # 10 x 2 + 15 = 35 s allowed
        (fast_on_time, 30),
        (paused, 1000),
    ]:
        latest(device, vitals={"battery_pct": 50}, vitals_at=now - seconds(silent))
    make_rule(tree["acme"], "missed_heartbeats", {}, profile=version.profile)

    assert periodic.missed_heartbeats(now=now) == (2, 0)
    assert open_alerts() == sorted(
        [
            (late.serial, "No heartbeat for 196 s (limit 195 s)"),
            (fast_late.serial, "No heartbeat for 36 s (limit 35 s)"),
        ]
    )

    latest(late, vitals_at=now + seconds(1))  # a heartbeat came
    assert periodic.missed_heartbeats(now=now + seconds(2)) == (0, 1)


# --- fleet offline -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_fleet_offline_opens_after_the_share_stayed_above_for_the_minutes(
    tree, telemetry_version, now
):
    fleet = [make_device(telemetry_version, tree["retail"]) for _ in range(5)]
    in_maintenance = make_device(telemetry_version, tree["retail"])
    Device.objects.filter(pk__in=[fleet[0].pk, fleet[1].pk, in_maintenance.pk]).update(
        connectivity="offline"
    )
    Device.objects.filter(pk=in_maintenance.pk).update(state=DeviceState.MAINTENANCE)
    rule = make_rule(
        tree["acme"],
        "fleet_offline",
        {"percent": 30, "minutes": 10},
        profile=telemetry_version.profile,
    )

    assert periodic.fleet_offline(now=now) == (0, 0)  # 2 of 5 = 40%: the clock starts
    assert condition(rule, None) == (False, now, None, now)
    assert periodic.fleet_offline(now=now + minutes(9.5)) == (0, 0)
    assert periodic.fleet_offline(now=now + minutes(10)) == (1, 0)
    alert = Alert.objects.get()
    assert (alert.device_id, alert.status, alert.message, alert.opened_at) == (
        None,
        "open",
        "2 of 5 devices offline (40%, limit 30%)",
        now + minutes(10),
    )
    assert periodic.fleet_offline(now=now + minutes(11)) == (0, 0)  # one fleet alert

    Device.objects.filter(pk=fleet[0].pk).update(connectivity="online")  # 20%
    assert periodic.fleet_offline(now=now + minutes(12)) == (0, 1)
    alert.refresh_from_db()
    assert (alert.status, alert.resolved_at, alert.details["resolved_value"]) == (
        "resolved",
        now + minutes(12),
        {"offline": 1, "total": 5, "percent": 20.0},
    )


@pytest.mark.django_db
def test_a_fleet_dip_shorter_than_the_minutes_opens_nothing(tree, telemetry_version, now):
    fleet = [make_device(telemetry_version, tree["acme"]) for _ in range(4)]
    spec = {"percent": 50, "minutes": 5}
    make_rule(tree["acme"], "fleet_offline", spec, profile=telemetry_version.profile)
    offline = Device.objects.filter(pk__in=[d.pk for d in fleet[:3]])

    offline.update(connectivity="offline")
    assert periodic.fleet_offline(now=now) == (0, 0)
    offline.update(connectivity="online")
    assert periodic.fleet_offline(now=now + minutes(3)) == (0, 0)
    offline.update(connectivity="offline")
    assert periodic.fleet_offline(now=now + minutes(6)) == (0, 0)  # the clock restarted at 6
    assert periodic.fleet_offline(now=now + minutes(11)) == (1, 0)


@pytest.mark.django_db
def test_a_broken_rule_does_not_stop_the_others(tree, telemetry_version, now, caplog):
    device = make_device(telemetry_version, tree["acme"])
    latest(device, metrics={"t": 1}, metrics_at=now - seconds(700))
    broken = make_rule(tree["acme"], "missing_data", {"seconds": 600}, name="a broken")
    make_rule(tree["acme"], "missing_data", {"seconds": 600}, name="b fine")
    type(broken).objects.filter(pk=broken.pk).update(condition={"seconds": "soon"})

    assert periodic.missing_data(now=now) == (1, 0)
    assert "periodic evaluation failed" in caplog.text
