"""Dead-letter services: replay (after fixing what refused them) and discard, both audited.

Both need ``telemetry.replay`` on the dead letter's organization; dead letters of unknown
devices have none and are platform staff's. Only ``new`` dead letters are acted on.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from apps.core.actors import Actor
from apps.core.context import get_request_id
from apps.core.models import AuditLog

from ..choices import DeadLetterStatus
from ..live import push_latest
from ..models import DeadLetter
from ..types import Incoming
from .batch import Refusal, run
from .caches import caches
from .messages import parse_topic

__all__ = ["ReplayResult", "dead_letter_discard", "dead_letter_replay"]

OBJECT_TYPE = "telemetry.deadletter"


@dataclass(frozen=True)
class ReplayResult:
    """``replayed``: now stored (or found already stored); ``refused``: refused again, left
    ``new`` with the new reason; ``stored``: sample and event rows written by the replay."""

    replayed: int
    refused: int
    stored: int


def _claim(actor: Actor, ids: Iterable[uuid.UUID]) -> list[DeadLetter]:
    scoped = DeadLetter.objects.for_actor(actor, "replay").filter(
        pk__in=list(ids), status=DeadLetterStatus.NEW
    )
    return list(
        DeadLetter.objects.select_for_update()
        .filter(pk__in=models.Subquery(scoped.values("pk")))
        .order_by("id")
    )


def _audit(actor: Actor, action: str, changes: list[tuple[DeadLetter, dict[str, Any]]]) -> None:
    request_id = get_request_id()
    AuditLog.objects.bulk_create(
        AuditLog(
            organization_id=letter.organization_id,
            actor_kind=str(actor.kind),
            actor_user_id=actor.user_id,
            actor_api_key_id=actor.api_key_id,
            actor_device_id=actor.device_id,
            actor_label=actor.label[:255],
            source=actor.source,
            action=action,
            object_type=OBJECT_TYPE,
            object_id=str(letter.pk),
            object_repr=str(letter)[:255],
            changes=change,
            request_id=request_id,
        )
        for letter, change in changes
    )


def dead_letter_replay(*, actor: Actor, dead_letter_ids: Iterable[uuid.UUID]) -> ReplayResult:
    """Run the raw payloads of the actor's ``new`` dead letters through the pipeline again.

    A message stored now (or already stored) marks its dead letter ``replayed`` (by the actor,
    now); one refused again stays ``new`` with the new reason and detail and no new dead letter.
    Either way ``replay_count`` grows and an audit row records it, all in one transaction."""
    with transaction.atomic():
        letters = _claim(actor, dead_letter_ids)
        if not letters:
            return ReplayResult(0, 0, 0)
        caches.forget(topic[0] for letter in letters if (topic := parse_topic(letter.topic)))
        batch = [
            Incoming(
                topic=letter.topic,
                payload=bytes(letter.payload),
                received_at=letter.received_at,
                source=letter.source,
                ref=letter.pk,
            )
            for letter in letters
        ]
        now = timezone.now()
        outcome = run(batch, now)
        refusals = {refusal.incoming.ref: refusal for refusal in outcome.refused}
        changes = [_replayed(letter, refusals.get(letter.pk), actor, now) for letter in letters]
        DeadLetter.objects.bulk_update(
            letters, ["status", "reason", "detail", "replay_count", "handled_at", "handled_by"]
        )
        _audit(actor, "deadletter.replay", changes)
        if outcome.pushed:
            transaction.on_commit(partial(push_latest, outcome.pushed))
    refused = len(refusals)
    return ReplayResult(len(letters) - refused, refused, outcome.result.stored)


def _replayed(
    letter: DeadLetter, refusal: Refusal | None, actor: Actor, now: datetime
) -> tuple[DeadLetter, dict[str, Any]]:
    change: dict[str, Any] = {"replay_count": [letter.replay_count, letter.replay_count + 1]}
    letter.replay_count += 1
    if refusal is None:
        change["status"] = [letter.status, DeadLetterStatus.REPLAYED.value]
        letter.status = DeadLetterStatus.REPLAYED
        letter.handled_at, letter.handled_by_id = now, actor.user_id
    else:
        if refusal.reason != letter.reason:
            change["reason"] = [letter.reason, refusal.reason]
        letter.reason, letter.detail = refusal.reason, refusal.detail[:4000]
    return letter, change


def dead_letter_discard(*, actor: Actor, dead_letter_ids: Iterable[uuid.UUID]) -> int:
    """Mark the actor's ``new`` dead letters discarded (by the actor, now); returns how many.
    The raw payload is kept: discarding only takes it off the queue."""
    with transaction.atomic():
        letters = _claim(actor, dead_letter_ids)
        now = timezone.now()
        DeadLetter.objects.filter(pk__in=[letter.pk for letter in letters]).update(
            status=DeadLetterStatus.DISCARDED, handled_at=now, handled_by_id=actor.user_id
        )
        _audit(
            actor,
            "deadletter.discard",
            [
                (letter, {"status": [letter.status, DeadLetterStatus.DISCARDED.value]})
                for letter in letters
            ],
        )
    return len(letters)
