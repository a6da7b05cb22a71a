"""Device messages for other features (``apps.devices.uplinks``) go through the ingest batch:
parsed and checked like telemetry, handed to their handler in the batch's transaction, refused
ones dead-lettered."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest
from django.db import connection

from apps.devices import uplinks
from apps.devices.choices import DeviceState
from apps.telemetry.ingest_worker import SUBSCRIPTIONS, subscriptions
from apps.telemetry.models import DeadLetter
from apps.telemetry.pipeline import process_batch
from apps.telemetry.types import Incoming

from .conftest import make_device, message

pytestmark = pytest.mark.django_db

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


class Recorder:
    """A handler that keeps what it got and refuses what it is told to."""

    def __init__(self) -> None:
        self.calls: list[list[uplinks.Uplink]] = []
        self.refuse: dict[str, tuple[str, str]] = {}  # subtopic -> (reason, detail)
        self.fail = False

    def __call__(self, batch: list[uplinks.Uplink]) -> list[tuple[uplinks.Uplink, str, str]]:
        if self.fail:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1/0")
        self.calls.append(batch)
        return [(u, *self.refuse[u.subtopic]) for u in batch if u.subtopic in self.refuse]


@pytest.fixture
def results() -> Iterator[Recorder]:
    recorder = Recorder()
    uplinks.register("test-results", "probe/+/result", recorder)
    yield recorder
    uplinks.unregister("test-results")


def routed(device, subtopic: str, raw: bytes) -> Incoming:
    return Incoming(topic=f"devices/{device.pk}/{subtopic}", payload=raw, received_at=AT)


def letters() -> list[tuple[str, str, str]]:
    return sorted(DeadLetter.objects.values_list("topic", "reason", "detail"))


def test_a_registered_topic_reaches_its_handler_in_batch_order(device, results):
    batch = [
        routed(device, "probe/c1/result", b'{"status": "received"}'),
        message(device, boot=1, seq=1, ts="2026-11-30T08:59:00Z", metrics={"humidity": 40.0}),
        routed(device, "probe/c2/result", b'{"status": "succeeded", "output": {"x": 1}}'),
    ]
    result = process_batch(batch)

    assert (result.received, result.stored, result.routed, result.dead_lettered) == (3, 1, 2, 0)
    [handed] = results.calls
    assert [(u.subtopic, u.document) for u in handed] == [
        ("probe/c1/result", {"status": "received"}),
        ("probe/c2/result", {"status": "succeeded", "output": {"x": 1}}),
    ]
    first = handed[0]
    assert (first.device_id, first.organization_id, first.device_state) == (
        device.pk,
        device.organization_id,
        DeviceState.ACTIVE,
    )
    assert (first.received_at, first.source) == (AT, "mqtt")


def test_what_a_handler_refuses_becomes_a_dead_letter(device, results):
    results.refuse = {
        "probe/c1/result": ("unknown_command", "no command c1 for this device"),
        "probe/c2/result": ("schema", "status must be a text"),
    }
    batch = [
        routed(device, "probe/c1/result", b'{"status": "received"}'),
        routed(device, "probe/c2/result", b'{"status": 3}'),
        routed(device, "probe/c3/result", b'{"status": "received"}'),
    ]
    result = process_batch(batch)

    assert (result.routed, result.dead_lettered, result.by_reason) == (
        1,
        2,
        {"refused": 1, "schema": 1},
    )
    base = f"devices/{device.pk}/probe"
    assert letters() == [
        (f"{base}/c1/result", "refused", "unknown_command: no command c1 for this device"),
        (f"{base}/c2/result", "schema", "status must be a text"),
    ]


def test_bad_routed_messages_are_refused_before_the_handler(
    device, results, telemetry_version, tree
):
    gone = make_device(telemetry_version, tree["acme"], state=DeviceState.DECOMMISSIONED)
    batch = [
        routed(device, "probe/c1/result", b"{not json"),
        routed(device, "probe/c2/result", b"[1, 2]"),
        routed(gone, "probe/c3/result", b'{"status": "received"}'),
        Incoming(
            topic="devices/0193a8b2-0000-7000-8000-000000000000/probe/c4/result",
            payload=b"{}",
            received_at=AT,
        ),
        routed(device, "probe/c5/other", b"{}"),  # no feature takes it
        routed(device, "probe/c6/result", b'{"ok": true}'),
    ]
    result = process_batch(batch)

    assert [[u.subtopic for u in call] for call in results.calls] == [["probe/c6/result"]]
    assert (result.routed, result.dead_lettered) == (1, 5)
    assert result.by_reason == {
        "malformed_json": 2,
        "device_state": 1,
        "unknown_device": 1,
        "bad_topic": 1,
    }


def test_a_handler_that_fails_rolls_the_whole_batch_back(device, results):
    results.fail = True
    batch = [
        message(device, boot=1, seq=1, ts="2026-11-30T08:59:00Z", metrics={"humidity": 40.0}),
        routed(device, "probe/c1/result", orjson.dumps({"status": "received"})),
    ]
    with pytest.raises(Exception, match="division by zero"):
        process_batch(batch)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM telemetry_sample")
        assert cursor.fetchone() == (0,)
    assert DeadLetter.objects.count() == 0


def test_the_ingest_worker_subscribes_to_every_registered_topic(results):
    assert subscriptions()[: len(SUBSCRIPTIONS)] == SUBSCRIPTIONS
    assert "$share/ingest/devices/+/probe/+/result" in subscriptions()
    uplinks.unregister("test-results")
    assert "$share/ingest/devices/+/probe/+/result" not in subscriptions()
