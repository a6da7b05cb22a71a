"""Bad input: every refused message becomes one dead letter with its exact reason and raw bytes,
is counted, and writes nothing else; a bad message never blocks the others of its batch."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from django.utils import timezone

from apps.core.models import Event
from apps.devices.models import Device
from apps.profiles.models import ProfileVersion
from apps.telemetry.models import DeadLetter, DeviceEvent, LatestValues, TelemetrySample
from apps.telemetry.pipeline import process_batch
from apps.telemetry.types import BatchResult, Incoming

from .conftest import make_device, message

pytestmark = pytest.mark.django_db

NOW = timezone.now()
TS = (NOW - dt.timedelta(minutes=1)).isoformat()


@dataclass
class Case:
    reason: str
    detail: str  # a regular expression, matched whole
    body: dict[str, Any] | None = None
    raw: bytes | None = None
    kind: str = "telemetry"
    settings: dict[str, Any] = field(default_factory=dict)


def telemetry(**fields: Any) -> dict[str, Any]:
    return {"boot": 1, "seq": 1, "ts": TS, "metrics": {"temperature": 20}} | fields


def heartbeat(**fields: Any) -> dict[str, Any]:
    return {"boot": 1, "seq": 1, "ts": TS, "vitals": {"rssi": -60}} | fields


def event(**fields: Any) -> dict[str, Any]:
    return {"boot": 1, "seq": 1, "ts": TS, "type": "door.open", "severity": "info"} | fields


def samples(*metrics: dict[str, Any]) -> dict[str, Any]:
    return {"boot": 1, "seq": 1, "samples": [{"ts": TS, "metrics": m} for m in metrics]}


WINDOW = r"ts \S+ is outside \S+ \.\. \S+"
CASES = {
    "malformed json": Case("malformed_json", r"unexpected character.*", raw=b"{bad"),
    "truncated json": Case("malformed_json", r".*", raw=b'{"boot": 1, "seq"'),
    "not an object": Case("malformed_json", "the payload is not a JSON object", raw=b"[1, 2]"),
    "not utf-8": Case("malformed_json", r".*", raw=b'{"boot": "\xff"}'),
    "nul in an unknown field": Case(
        "malformed_json",
        r"\\u0000 \(NUL\) cannot be stored",
        telemetry(metrics={"temperature": 1, "note": "a\u0000b"}),
    ),
    "nul in an event message": Case(
        "malformed_json",
        r"\\u0000 \(NUL\) cannot be stored",
        event(message="\u0000"),
        kind="events",
    ),
    "no boot": Case("missing_counters", "boot and seq must be integers", {"seq": 1, "ts": TS}),
    "boolean seq": Case("missing_counters", "boot and seq must be integers", telemetry(seq=True)),
    "float seq": Case("missing_counters", "boot and seq must be integers", telemetry(seq=2.0)),
    "text boot": Case("missing_counters", "boot and seq must be integers", telemetry(boot="1")),
    "negative boot": Case(
        "missing_counters", r"boot and seq must be between 0 and 2\^63-1", telemetry(boot=-1)
    ),
    "seq beyond 2^63-1": Case(
        "missing_counters", r"boot and seq must be between 0 and 2\^63-1", telemetry(seq=2**63)
    ),
    "no ts": Case("bad_timestamp", "ts must be an ISO 8601 text", telemetry(ts=None)),
    "epoch ts": Case("bad_timestamp", "ts must be an ISO 8601 text", telemetry(ts=1764460800)),
    "ts not iso": Case(
        "bad_timestamp", "ts 'yesterday' is not ISO 8601", telemetry(ts="yesterday")
    ),
    "ts without offset": Case(
        "bad_timestamp",
        r"ts '2026-01-01T00:00:00' has no UTC offset \(add Z\)",
        telemetry(ts="2026-01-01T00:00:00"),
    ),
    "ts far in the future": Case(
        "timestamp_range", WINDOW, telemetry(ts=(NOW + dt.timedelta(hours=6)).isoformat())
    ),
    "ts far in the past": Case(
        "timestamp_range", WINDOW, telemetry(ts=(NOW - dt.timedelta(days=8)).isoformat())
    ),
    "ts before every partition": Case(
        "timestamp_range",
        r"ts \S+: no partition holds that day",
        telemetry(ts=(NOW - dt.timedelta(days=20)).isoformat()),
        settings={"TELEMETRY_MAX_AGE": dt.timedelta(days=60)},
    ),
    "wrong type": Case(
        "schema", "temperature: 'hot' is not a number", telemetry(metrics={"temperature": "hot"})
    ),
    "null value": Case(
        "schema", "temperature: null is not a value", telemetry(metrics={"temperature": None})
    ),
    "above the maximum": Case(
        "schema",
        "temperature: 200.0 is above the maximum 125",
        telemetry(metrics={"temperature": 200, "humidity": 30}),
    ),
    "two bad values": Case(
        "schema",
        "temperature: 'x' is not a number; humidity: -1.0 is below the minimum 0",
        telemetry(metrics={"temperature": "x", "humidity": -1}),
    ),
    "metrics not an object": Case("schema", "metrics must be an object", telemetry(metrics=[1])),
    "no metrics": Case("schema", "metrics must be an object", {"boot": 1, "seq": 1, "ts": TS}),
    "empty samples": Case(
        "schema", "samples must be a non-empty list", {"boot": 1, "seq": 1, "samples": []}
    ),
    "bad sample": Case(
        "schema",
        "samples\\[1\\].temperature: 'warm' is not a number",
        samples({"temperature": 1}, {"temperature": "warm"}),
    ),
    "sample not an object": Case(
        "schema", r"samples\[0\] must be an object", {"boot": 1, "seq": 1, "samples": [3]}
    ),
    "too many samples": Case(
        "oversized",
        r"4 samples \(at most 3\)",
        samples({}, {}, {}, {}),
        settings={"TELEMETRY_MAX_SAMPLES_PER_MESSAGE": 3},
    ),
    "too many bytes": Case(
        "oversized",
        r"\d+ bytes \(at most 64\)",
        telemetry(note="x" * 100),
        settings={"MQTT_MAX_MESSAGE_BYTES": 64},
    ),
    "vitals not numbers": Case(
        "schema",
        "vitals must be a flat object of numbers",
        heartbeat(vitals={"mode": "eco"}),
        kind="heartbeat",
    ),
    "nested vitals": Case(
        "schema",
        "vitals must be a flat object of numbers",
        heartbeat(vitals={"disk": {"free": 1}}),
        kind="heartbeat",
    ),
    "negative uptime": Case(
        "schema",
        "uptime_s must be a non-negative integer",
        heartbeat(uptime_s=-5),
        kind="heartbeat",
    ),
    "unknown severity": Case(
        "schema",
        "severity must be one of critical, debug, error, info, warning",
        event(severity="fatal"),
        kind="events",
    ),
    "event without type": Case(
        "schema", "type must be a text of 1 to 200 characters", event(type=None), kind="events"
    ),
    "event data not an object": Case(
        "schema", "data must be an object", event(data=[1]), kind="events"
    ),
    "event message not text": Case(
        "schema", "message must be a text", event(message=5), kind="events"
    ),
}


def nothing_stored() -> None:
    assert not TelemetrySample.objects.exists()
    assert not DeviceEvent.objects.exists()
    assert not LatestValues.objects.exists()
    assert not Event.objects.filter(type="telemetry.batch").exists()


def the_dead_letter() -> DeadLetter:
    (letter,) = DeadLetter.objects.all()
    return letter


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_a_bad_message_is_dead_lettered_with_its_reason(
    device: Device, settings, case: Case
) -> None:
    for name, value in case.settings.items():
        setattr(settings, name, value)
    raw = case.raw if case.raw is not None else orjson.dumps(case.body)
    incoming = message(device, case.kind, received_at=NOW, raw=raw)

    result = process_batch([incoming])

    assert result == BatchResult(received=1, dead_lettered=1, by_reason={case.reason: 1})
    letter = the_dead_letter()
    assert (letter.organization_id, letter.device_id, letter.source) == (
        device.organization_id,
        device.pk,
        "mqtt",
    )
    assert (letter.topic, letter.reason, letter.status) == (incoming.topic, case.reason, "new")
    assert re.fullmatch(case.detail, letter.detail), letter.detail
    assert (bytes(letter.payload), letter.received_at, letter.replay_count) == (raw, NOW, 0)
    nothing_stored()
    assert Device.objects.get(pk=device.pk).last_seen_at is None


@pytest.mark.parametrize(
    "state", ["suspended", "decommissioned", "replaced", "escrow", "discovered"]
)
def test_a_device_out_of_service_is_refused(tree, telemetry_version, state: str) -> None:
    device = make_device(telemetry_version, tree["acme"], state=state)

    result = process_batch([message(device, **telemetry())])

    assert result.by_reason == {"device_state": 1}
    letter = the_dead_letter()
    assert (letter.reason, letter.detail) == ("device_state", f"the device is {state}")
    assert (letter.organization_id, letter.device_id) == (tree["acme"].pk, device.pk)
    nothing_stored()


def test_an_unknown_device_is_refused_without_an_organization(db) -> None:
    stranger = str(uuid.uuid4())

    result = process_batch([message(stranger, **telemetry())])

    assert result.by_reason == {"unknown_device": 1}
    letter = the_dead_letter()
    assert (letter.reason, letter.detail) == ("unknown_device", f"no device {stranger}")
    assert (letter.organization_id, letter.device_id) == (None, None)
    nothing_stored()


@pytest.mark.parametrize(
    "topic",
    [
        "devices/{id}/status",
        "devices/{ID}/telemetry",
        "devices/not-a-uuid/telemetry",
        "devices/{id}/telemetry/more",
        "things/{id}/telemetry",
        "",
    ],
)
def test_a_bad_topic_is_refused(device: Device, topic: str) -> None:
    topic = topic.format(id=device.pk, ID=str(device.pk).upper())
    raw = orjson.dumps(telemetry())

    result = process_batch([Incoming(topic=topic, payload=raw, received_at=NOW, source="https")])

    assert result.by_reason == {"bad_topic": 1}
    letter = the_dead_letter()
    assert (letter.topic, letter.source, letter.organization_id) == (topic, "https", None)
    assert letter.detail == f"not devices/<id>/telemetry|heartbeat|events: {topic!r}"
    nothing_stored()


def test_a_strict_profile_refuses_unknown_metrics(device: Device) -> None:
    ProfileVersion.objects.filter(pk=device.profile_version_id).update(
        capabilities=["telemetry.strict"], updated_at=NOW
    )

    process_batch([message(device, **telemetry(metrics={"temperature": 1, "lux": 3, "co2": 1}))])

    letter = the_dead_letter()
    assert (letter.reason, letter.detail) == (
        "unknown_metric",
        "not in the profile's schema: co2, lux",
    )
    nothing_stored()


def test_a_profile_without_strictness_keeps_unknown_metrics(device: Device) -> None:
    process_batch([message(device, **telemetry(metrics={"temperature": 1, "lux": 3}))])

    assert list(TelemetrySample.objects.values_list("metrics", "extra")) == [
        ({"temperature": 1.0}, {"lux": 3})
    ]


def test_a_schema_broken_by_hand_refuses_telemetry_but_not_heartbeats(device: Device) -> None:
    ProfileVersion.objects.filter(pk=device.profile_version_id).update(
        telemetry_schema={"metrics": [{"name": "bad name"}]}, updated_at=NOW
    )

    result = process_batch(
        [message(device, **telemetry()), message(device, "heartbeat", **heartbeat())]
    )

    assert (result.stored, result.by_reason) == (1, {"schema": 1})
    assert the_dead_letter().detail == "the profile version's telemetry schema is invalid"


def test_bad_messages_never_block_the_good_ones(tree, telemetry_version) -> None:
    good, suspended = (
        make_device(telemetry_version, tree["acme"]),
        make_device(telemetry_version, tree["acme"], state="suspended"),
    )
    batch = [
        message(good, raw=b"{oops"),
        message(good, **telemetry(seq=1)),
        message(suspended, **telemetry(seq=1)),
        message(good, **telemetry(seq=2, metrics={"temperature": "hot"})),
        message(str(uuid.uuid4()), **telemetry()),
        message(good, "events", **event(seq=1)),
        Incoming(topic="devices/x/telemetry", payload=b"{}", received_at=NOW),
        message(good, "heartbeat", **heartbeat(seq=1)),
    ]

    result = process_batch(batch)

    assert result == BatchResult(
        received=8,
        stored=3,
        dead_lettered=5,
        by_reason={
            "malformed_json": 1,
            "device_state": 1,
            "schema": 1,
            "unknown_device": 1,
            "bad_topic": 1,
        },
        devices=1,
    )
    assert list(TelemetrySample.objects.order_by("kind").values_list("device_id", "kind")) == [
        (good.pk, 1),
        (good.pk, 2),
    ]
    assert list(DeviceEvent.objects.values_list("device_id", "type")) == [(good.pk, "door.open")]
    assert sorted(DeadLetter.objects.values_list("reason", flat=True)) == [
        "bad_topic",
        "device_state",
        "malformed_json",
        "schema",
        "unknown_device",
    ]
