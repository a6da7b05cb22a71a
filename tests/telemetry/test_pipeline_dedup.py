"""De-duplication as a property: a set of messages processed once gives the same tables as the
same messages replayed any number of times, in any order, split into batches any way."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.devices.models import Device
from apps.telemetry.models import DeviceEvent, LatestValues, TelemetrySample
from apps.telemetry.pipeline import process_batch
from apps.telemetry.types import Incoming

from .conftest import make_device, message

pytestmark = pytest.mark.django_db

BASE = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=20)
NAMES = ["temperature", "humidity", "battery_pct", "lux"]  # lux is not in the schema: extra
values = st.dictionaries(st.sampled_from(NAMES), st.integers(0, 100), max_size=3)


class Rollback(Exception):
    """Undo one example's writes (the test's own transaction goes on)."""


@st.composite
def message_bodies(draw: st.DrawFn) -> list[tuple[int, str, dict[str, Any]]]:
    """Messages of two devices; (device, topic, boot, seq) unique, as the protocol requires."""
    keys = draw(
        st.lists(
            st.tuples(
                st.integers(0, 1),
                st.sampled_from(["telemetry", "heartbeat", "events"]),
                st.integers(1, 2),
                st.integers(1, 4),
            ),
            min_size=1,
            max_size=10,
            unique=True,
        )
    )
    bodies = []
    for device, kind, boot, seq in keys:
        stamps = draw(st.lists(st.integers(0, 900), min_size=1, max_size=3, unique=True))
        ts = [(BASE + dt.timedelta(seconds=s)).isoformat() for s in stamps]
        body: dict[str, Any] = {"boot": boot, "seq": seq, "ts": ts[0]}
        if kind == "heartbeat":
            body["vitals"] = draw(values)
        elif kind == "events":
            body["type"] = draw(st.sampled_from(["door.open", "door.close"]))
        elif len(ts) == 1:
            body["metrics"] = draw(values)
        else:
            body = {"boot": boot, "seq": seq}
            body["samples"] = [{"ts": moment, "metrics": draw(values)} for moment in ts]
        bodies.append((device, kind, body))
    return bodies


@st.composite
def replays(draw: st.DrawFn, count: int) -> list[list[int]]:
    """Every message at least once, some again, in any order, cut into batches anywhere."""
    extra = draw(st.lists(st.integers(0, count - 1), max_size=2 * count))
    order = draw(st.permutations([*range(count), *extra]))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=4)))
    bounds = [0, *[cut for cut in cuts if cut < len(order)], len(order)]
    return [order[start:end] for start, end in itertools.pairwise(bounds) if end > start]


def tables() -> dict[str, Any]:
    samples = TelemetrySample.objects.order_by("device_id", "ts", "kind", "boot", "seq", "idx")
    events = DeviceEvent.objects.order_by("device_id", "ts", "boot", "seq")
    latest = LatestValues.objects.order_by("device_id")
    return {
        "samples": list(
            samples.values_list("device_id", "ts", "kind", "boot", "seq", "idx", "metrics", "extra")
        ),
        "events": list(events.values_list("device_id", "ts", "boot", "seq", "type", "severity")),
        # the stamps and key sets of latest values do not depend on the order data arrives in
        "latest": [
            (row.device_id, row.metrics_at, sorted(row.metrics), row.vitals_at, sorted(row.vitals))
            for row in latest
        ],
    }


def run(batches: list[list[Incoming]]) -> tuple[dict[str, Any], int, int]:
    stored = duplicates = 0
    try:
        with transaction.atomic():
            for batch in batches:
                result = process_batch(batch)
                assert result.dead_lettered == 0
                stored, duplicates = stored + result.stored, duplicates + result.duplicates
            raise Rollback(tables())
    except Rollback as rollback:
        return rollback.args[0], stored, duplicates


@pytest.fixture
def devices(tree, telemetry_version) -> list[Device]:
    return [make_device(telemetry_version, tree["acme"]) for _ in range(2)]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_replaying_in_any_order_and_split_stores_the_same_tables(
    devices: list[Device], data: st.DataObject
) -> None:
    bodies = data.draw(message_bodies())
    plan = data.draw(replays(len(bodies)))

    def copy(index: int, delay: int = 0) -> Incoming:
        device, kind, body = bodies[index]
        return message(
            devices[device], kind, received_at=BASE + dt.timedelta(hours=1, seconds=delay), **body
        )

    once, stored_once, _ = run([[copy(index) for index in range(len(bodies))]])
    replayed, stored, duplicates = run(
        [[copy(index, delay=position) for position, index in enumerate(batch)] for batch in plan]
    )

    assert replayed == once
    assert stored == stored_once
    assert duplicates == sum(len(batch) for batch in plan) - len(bodies)
