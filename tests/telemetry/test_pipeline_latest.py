"""Latest values: newer data wins key by key, late data only fills missing keys, the stamps
never go back; the values pushed after commit are the stored ones."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from apps.devices.models import Device
from apps.telemetry.live import push_latest
from apps.telemetry.models import LatestValues
from apps.telemetry.pipeline import process_batch
from apps.telemetry.types import Incoming

from .conftest import message

pytestmark = pytest.mark.django_db

T = timezone.now().replace(microsecond=0) - dt.timedelta(hours=1)
_seq = iter(range(1, 10_000))


def at(seconds: int) -> dt.datetime:
    return T + dt.timedelta(seconds=seconds)


def sample(device: Device, seconds: int, **metrics: Any) -> Incoming:
    return message(device, boot=1, seq=next(_seq), ts=at(seconds).isoformat(), metrics=metrics)


def beat(device: Device, seconds: int, uptime: int | None = None, **vitals: Any) -> Incoming:
    body: dict[str, Any] = {"boot": 1, "seq": next(_seq), "ts": at(seconds).isoformat()}
    body["vitals"] = vitals
    if uptime is not None:
        body["uptime_s"] = uptime
    return message(device, "heartbeat", **body)


def latest(device: Device) -> tuple[Any, ...]:
    row = LatestValues.objects.get(device=device)
    return row.metrics, row.metrics_at, row.vitals, row.vitals_at, row.uptime_s


def test_newer_data_wins_key_by_key(device: Device) -> None:
    process_batch([sample(device, 0, temperature=20, humidity=40)])
    process_batch([sample(device, 10, temperature=21)])

    assert latest(device)[:2] == ({"temperature": 21.0, "humidity": 40.0}, at(10))


def test_late_data_only_fills_missing_keys_and_never_moves_the_stamp_back(device: Device) -> None:
    process_batch([sample(device, 0, temperature=20)])
    process_batch([sample(device, -30, temperature=5, battery_pct=90)])

    assert latest(device)[:2] == ({"temperature": 20.0, "battery_pct": 90.0}, at(0))


def test_a_batch_straddling_the_stored_stamp_is_merged_around_it(device: Device) -> None:
    process_batch([sample(device, 0, temperature=20)])

    process_batch(
        [
            sample(device, 5, temperature=30),
            sample(device, -5, temperature=1, humidity=1),
            sample(device, -3, humidity=2),
        ]
    )

    assert latest(device)[:2] == ({"temperature": 30.0, "humidity": 2.0}, at(5))


def test_a_first_batch_is_merged_in_timestamp_order_not_arrival_order(device: Device) -> None:
    process_batch(
        [
            sample(device, 2, temperature=3),
            sample(device, 0, temperature=1, humidity=1),
            sample(device, 1, temperature=2),
        ]
    )

    assert latest(device)[:2] == ({"temperature": 3.0, "humidity": 1.0}, at(2))


def test_heartbeats_keep_the_newest_vitals_and_uptime(device: Device) -> None:
    process_batch([beat(device, 0, uptime=100, battery_pct=80, rssi=-60)])
    process_batch([beat(device, 30, uptime=130, battery_pct=79)])
    process_batch([beat(device, -30, uptime=70, battery_pct=81, load=0.5)])

    assert latest(device) == (
        {},
        None,
        {"battery_pct": 79, "rssi": -60, "load": 0.5},
        at(30),
        130,
    )


def test_metrics_and_vitals_keep_their_own_stamps(device: Device) -> None:
    process_batch([sample(device, 0, temperature=20), beat(device, 60, uptime=5, rssi=-50)])
    process_batch([sample(device, 10, humidity=30)])

    assert latest(device) == (
        {"temperature": 20.0, "humidity": 30.0},
        at(10),
        {"rssi": -50},
        at(60),
        5,
    )


def test_the_changed_latest_values_are_pushed_after_commit(
    device: Device, django_capture_on_commit_callbacks
) -> None:
    process_batch([sample(device, 0, temperature=20, humidity=40)])

    with django_capture_on_commit_callbacks() as callbacks:
        process_batch([sample(device, 10, temperature=22), beat(device, 5, rssi=-70)])

    (push,) = [callback for callback in callbacks if getattr(callback, "func", None) is push_latest]
    assert push.args == (
        {
            device.pk: {
                "organization_id": str(device.organization_id),
                "ts": at(10).isoformat(),
                "metrics": {"temperature": 22.0, "humidity": 40.0},
                "metrics_at": at(10).isoformat(),
                "vitals": {"rssi": -70},
                "vitals_at": at(5).isoformat(),
            }
        },
    )


def test_nothing_is_pushed_for_duplicates(
    device: Device, django_capture_on_commit_callbacks
) -> None:
    batch = [sample(device, 0, temperature=20)]
    process_batch(batch)

    with django_capture_on_commit_callbacks() as callbacks:
        process_batch(batch)

    assert [
        callback for callback in callbacks if getattr(callback, "func", None) is push_latest
    ] == []
