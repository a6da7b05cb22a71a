"""Dead letters replayed after a fix or discarded (scoped, audited), and HTTPS uploads drained
through the same pipeline."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
import pytest
from django.utils import timezone

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog
from apps.devices.models import Device, UplinkMessage
from apps.profiles.models import ProfileVersion
from apps.telemetry.models import DeadLetter, DeviceEvent, TelemetrySample
from apps.telemetry.pipeline import (
    ReplayResult,
    caches,
    dead_letter_discard,
    dead_letter_replay,
    drain_uplinks,
    process_batch,
)
from tests.factories import actor, make_member

from .conftest import TELEMETRY_SCHEMA, make_device, message

pytestmark = pytest.mark.django_db

TS = (timezone.now() - dt.timedelta(minutes=2)).replace(microsecond=0)


def body(**fields: Any) -> dict[str, Any]:
    return {"boot": 1, "seq": 1, "ts": TS.isoformat(), "metrics": {"humidity": 150}} | fields


def refused(device: Device | str, **fields: Any) -> DeadLetter:
    process_batch([message(device, **body(**fields))])
    return DeadLetter.objects.latest("received_at")


def allow_humidity_up_to(version: ProfileVersion, maximum: int) -> None:
    schema = {
        "metrics": [
            dict(m, max=maximum) if m["name"] == "humidity" else m
            for m in TELEMETRY_SCHEMA["metrics"]
        ]
    }
    version.telemetry_schema = schema
    version.save()


def audit_rows() -> list[tuple[Any, ...]]:
    return list(
        AuditLog.objects.filter(object_type="telemetry.deadletter")
        .order_by("created_at")
        .values_list("action", "object_id", "organization_id", "actor_user_id", "changes")
    )


def test_a_replay_after_the_profile_is_fixed_stores_the_message(
    tree, device, telemetry_version
) -> None:
    letter = refused(device)
    assert (letter.reason, letter.detail) == ("schema", "humidity: 150.0 is above the maximum 100")
    owner = make_member(tree["acme"], Role.OWNER)
    allow_humidity_up_to(telemetry_version, 200)

    result = dead_letter_replay(actor=actor(owner), dead_letter_ids=[letter.pk])

    assert result == ReplayResult(replayed=1, refused=0, stored=1)
    assert list(TelemetrySample.objects.values_list("device_id", "ts", "metrics")) == [
        (device.pk, TS, {"humidity": 150.0})
    ]
    letter.refresh_from_db()
    assert (letter.status, letter.replay_count, letter.handled_by_id) == ("replayed", 1, owner.pk)
    assert letter.handled_at is not None
    assert audit_rows() == [
        (
            "deadletter.replay",
            str(letter.pk),
            tree["acme"].pk,
            owner.pk,
            {"replay_count": [0, 1], "status": ["new", "replayed"]},
        )
    ]
    assert DeadLetter.objects.count() == 1  # no new dead letter


def test_a_replay_refused_again_stays_new_with_the_new_reason(tree, telemetry_version) -> None:
    device = make_device(telemetry_version, tree["acme"], state="suspended")
    letter = refused(device)
    assert letter.reason == "device_state"
    Device.objects.filter(pk=device.pk).update(state="active")  # resumed; the value is still bad
    operator = make_member(tree["acme"], Role.OPERATOR)

    result = dead_letter_replay(actor=actor(operator), dead_letter_ids=[letter.pk])

    assert result == ReplayResult(replayed=0, refused=1, stored=0)
    letter.refresh_from_db()
    assert (letter.status, letter.replay_count, letter.reason, letter.detail) == (
        "new",
        1,
        "schema",
        "humidity: 150.0 is above the maximum 100",
    )
    assert (letter.handled_at, letter.handled_by_id) == (None, None)
    assert audit_rows() == [
        (
            "deadletter.replay",
            str(letter.pk),
            tree["acme"].pk,
            operator.pk,
            {"replay_count": [0, 1], "reason": ["device_state", "schema"]},
        )
    ]
    assert not TelemetrySample.objects.exists()
    assert DeadLetter.objects.count() == 1


def test_replaying_a_message_stored_meanwhile_marks_it_replayed(
    tree, device, telemetry_version
) -> None:
    letter = refused(device)
    allow_humidity_up_to(telemetry_version, 200)
    caches.clear()  # as once the cached device facts expire (TELEMETRY_DEVICE_CACHE_SECONDS)
    process_batch([message(device, **body())])  # the device sent it again after the fix

    result = dead_letter_replay(actor=SYSTEM, dead_letter_ids=[letter.pk])

    assert result == ReplayResult(replayed=1, refused=0, stored=0)
    assert TelemetrySample.objects.count() == 1


@pytest.mark.parametrize("who", ["other organization", "viewer"])
def test_a_replay_or_discard_outside_the_actors_scope_changes_nothing(
    tree, device, who: str
) -> None:
    letter = refused(device)
    if who == "viewer":
        user = make_member(tree["acme"], Role.VIEWER)
    else:
        user = make_member(tree["globex"], Role.OWNER)

    assert dead_letter_replay(actor=actor(user), dead_letter_ids=[letter.pk]) == ReplayResult(
        0, 0, 0
    )
    assert dead_letter_discard(actor=actor(user), dead_letter_ids=[letter.pk]) == 0

    letter.refresh_from_db()
    assert (letter.status, letter.replay_count) == ("new", 0)
    assert audit_rows() == []


def test_only_platform_staff_reach_dead_letters_of_unknown_devices(tree, telemetry_version) -> None:
    device_id = uuid.uuid4()
    letter = refused(str(device_id))
    assert (letter.reason, letter.organization_id) == ("unknown_device", None)
    owner = make_member(tree["acme"], Role.OWNER)
    assert dead_letter_replay(actor=actor(owner), dead_letter_ids=[letter.pk]).replayed == 0
    allow_humidity_up_to(telemetry_version, 200)
    Device.objects.create(
        id=device_id,
        organization=tree["acme"],
        manufacturer=tree["acme"],
        profile_version=telemetry_version,
        serial="LATE-1",
        state="active",
    )

    result = dead_letter_replay(actor=SYSTEM, dead_letter_ids=[letter.pk])

    assert result == ReplayResult(replayed=1, refused=0, stored=1)
    assert list(TelemetrySample.objects.values_list("device_id", flat=True)) == [device_id]


def test_discarding_is_audited_and_happens_once(tree, device) -> None:
    letters = [refused(device, seq=1), refused(device, seq=2)]
    owner = make_member(tree["acme"], Role.ADMIN)
    ids = [letter.pk for letter in letters]

    assert dead_letter_discard(actor=actor(owner), dead_letter_ids=ids) == 2
    assert dead_letter_discard(actor=actor(owner), dead_letter_ids=ids) == 0
    assert dead_letter_replay(actor=actor(owner), dead_letter_ids=ids) == ReplayResult(0, 0, 0)

    rows = DeadLetter.objects.filter(pk__in=ids).values_list(
        "status", "handled_by_id", "replay_count"
    )
    assert sorted(rows) == [("discarded", owner.pk, 0), ("discarded", owner.pk, 0)]
    assert sorted(audit_rows()) == sorted(
        ("deadletter.discard", str(pk), tree["acme"].pk, owner.pk, {"status": ["new", "discarded"]})
        for pk in ids
    )
    assert not TelemetrySample.objects.exists()


def uplink(device: Device, kind: str, seq: int, **fields: Any) -> UplinkMessage:
    payload = {"boot": 1, "seq": seq, "ts": TS.isoformat()} | fields
    return UplinkMessage.objects.create(device=device, kind=kind, boot=1, seq=seq, payload=payload)


def test_draining_uplinks_stores_them_and_marks_them_processed(device: Device) -> None:
    queued = [
        uplink(device, "telemetry", 1, metrics={"temperature": 20}),
        uplink(device, "heartbeat", 1, vitals={"rssi": -50}, uptime_s=9),
        uplink(device, "events", 1, type="door.open"),
        uplink(device, "telemetry", 2, metrics={"temperature": "warm"}),
    ]

    assert drain_uplinks() == 4
    assert drain_uplinks() == 0

    assert list(TelemetrySample.objects.order_by("kind").values_list("kind", "seq", "metrics")) == [
        (1, 1, {"temperature": 20.0}),
        (2, 1, {"rssi": -50, "uptime_s": 9}),
    ]
    assert list(DeviceEvent.objects.values_list("type", flat=True)) == ["door.open"]
    letter = DeadLetter.objects.get()
    assert (letter.source, letter.topic, letter.reason) == (
        "https",
        f"devices/{device.pk}/telemetry",
        "schema",
    )
    assert orjson.loads(bytes(letter.payload)) == queued[3].payload
    assert letter.received_at == queued[3].received_at
    assert not UplinkMessage.objects.filter(processed_at=None).exists()


def test_draining_takes_the_oldest_uploads_first_up_to_the_limit(device: Device) -> None:
    queued = [uplink(device, "telemetry", seq, metrics={}) for seq in range(1, 6)]

    assert drain_uplinks(limit=2) == 2

    pending = UplinkMessage.objects.filter(processed_at=None).order_by("id")
    assert list(pending.values_list("pk", flat=True)) == [row.pk for row in queued[2:]]
    assert sorted(TelemetrySample.objects.values_list("seq", flat=True)) == [1, 2]
