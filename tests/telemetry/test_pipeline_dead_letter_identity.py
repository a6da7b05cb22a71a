"""A dead letter is one message: the broker redelivering a refused message (the worker died
after the commit, before the acknowledgement) makes no second dead letter; different messages
still make one each."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib
import uuid
from typing import Any

import orjson
import pytest
from django.db import connection
from django.utils import timezone

from apps.accounts.roles import Role
from apps.telemetry.models import DeadLetter
from apps.telemetry.pipeline import ReplayResult, dead_letter_discard, dead_letter_replay
from apps.telemetry.pipeline import process_batch as process
from apps.telemetry.types import BatchResult
from tests.factories import actor, make_member

from .conftest import message

pytestmark = pytest.mark.django_db

TS = (timezone.now() - dt.timedelta(minutes=2)).replace(microsecond=0).isoformat()
MIGRATION = importlib.import_module("apps.telemetry.migrations.0003_deadletter_digest")


def too_humid(seq: int = 1) -> dict[str, Any]:
    return {"boot": 1, "seq": seq, "ts": TS, "metrics": {"humidity": 150}}


def letters() -> list[tuple[Any, ...]]:
    return list(DeadLetter.objects.order_by("received_at").values_list("topic", "reason", "status"))


def test_a_redelivered_bad_message_makes_one_dead_letter(device) -> None:
    first = message(device, **too_humid())
    again = dataclasses.replace(first, received_at=first.received_at + dt.timedelta(seconds=5))

    results = [process([first]), process([again])]

    assert results == [
        BatchResult(received=1, dead_lettered=1, by_reason={"schema": 1}),
        BatchResult(received=1, duplicates=1),
    ]
    letter = DeadLetter.objects.get()
    assert (letter.topic, bytes(letter.payload), letter.received_at) == (
        first.topic,
        first.payload,
        first.received_at,
    )
    assert (
        bytes(letter.digest)
        == hashlib.sha256(first.topic.encode() + b"\0" + first.payload).digest()
    )


def test_a_bad_message_twice_in_one_batch_makes_one_dead_letter(device) -> None:
    bad = message(device, **too_humid())

    result = process([bad, bad, message(device, **too_humid(seq=2))])

    assert result == BatchResult(received=3, duplicates=1, dead_lettered=2, by_reason={"schema": 2})
    assert sorted(
        orjson.loads(bytes(p))["seq"] for p in DeadLetter.objects.values_list("payload", flat=True)
    ) == [1, 2]


def test_different_bad_messages_make_a_dead_letter_each(device) -> None:
    stranger = str(uuid.uuid4())
    batches = [
        [message(device, **too_humid(seq=1))],
        [message(device, **too_humid(seq=2))],  # other bytes: another message
        [message(stranger, **too_humid(seq=1))],  # the same bytes from another device
        [message(device, "events", **too_humid(seq=1))],  # ... or on another topic
    ]

    results = [process(batch) for batch in batches]

    assert [(r.dead_lettered, r.duplicates) for r in results] == [(1, 0)] * 4
    assert letters() == [
        (f"devices/{device.pk}/telemetry", "schema", "new"),
        (f"devices/{device.pk}/telemetry", "schema", "new"),
        (f"devices/{stranger}/telemetry", "unknown_device", "new"),
        (f"devices/{device.pk}/events", "schema", "new"),
    ]
    assert len(set(DeadLetter.objects.values_list("digest", flat=True))) == 4


def test_a_redelivery_after_a_discard_or_a_replay_leaves_the_dead_letter_as_it_is(
    tree, device
) -> None:
    owner = actor(make_member(tree["acme"], Role.OWNER))
    discarded, replayed = message(device, **too_humid(seq=1)), message(device, **too_humid(seq=2))
    process([discarded, replayed])
    by_seq = {
        orjson.loads(bytes(letter.payload))["seq"]: letter for letter in DeadLetter.objects.all()
    }
    assert dead_letter_discard(actor=owner, dead_letter_ids=[by_seq[1].pk]) == 1
    assert dead_letter_replay(actor=owner, dead_letter_ids=[by_seq[2].pk]) == ReplayResult(0, 1, 0)

    result = process([discarded, replayed])

    assert result == BatchResult(received=2, duplicates=2)
    assert sorted(DeadLetter.objects.values_list("status", "replay_count")) == [
        ("discarded", 0),
        ("new", 1),
    ]


def test_the_migration_gives_existing_dead_letters_the_same_identity_once(device) -> None:
    topic, payload = f"devices/{device.pk}/telemetry", orjson.dumps(too_humid())
    now = timezone.now()
    oldest, repeat, other = (
        DeadLetter.objects.create(
            topic=topic, reason="schema", payload=raw, received_at=now + dt.timedelta(seconds=s)
        )
        for s, raw in ((0, payload), (1, payload), (2, b"\xff not json"))
    )

    with connection.cursor() as cursor:
        cursor.execute(MIGRATION.BACKFILL)

    digests = dict(DeadLetter.objects.values_list("pk", "digest"))
    assert {pk: bytes(d) if d is not None else None for pk, d in digests.items()} == {
        oldest.pk: DeadLetter.message_digest(topic, payload),
        repeat.pk: None,
        other.pk: DeadLetter.message_digest(topic, b"\xff not json"),
    }
    assert process([message(device, raw=payload)]) == BatchResult(received=1, duplicates=1)
