"""Domain events: an outbox written in the caller's transaction, delivered at least once.

``emit()`` writes an ``Event`` row and one ``EventDelivery`` row per registered consumer whose
patterns match, inside the caller's transaction, and after commit wakes the dispatcher. The
database rows are the source of truth; the Celery message is only a wake-up, so a lost message
or a dead worker delays delivery but never loses it (the periodic sweeper picks up anything due
or whose lease has expired).

Consumers must be idempotent: they receive the event (with its id) and may see it again after a
crash. Register one with::

    @consumer("notifications", events=["alert.*"])
    def notify(event: Event) -> None: ...
"""

from __future__ import annotations

import fnmatch
import logging
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from .models import DeliveryStatus, Event, EventDelivery

logger = logging.getLogger(__name__)

Handler = Callable[[Event], None]


@dataclass(frozen=True)
class Consumer:
    name: str
    patterns: tuple[str, ...]
    handler: Handler

    def wants(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.patterns)


_registry: dict[str, Consumer] = {}


def consumer(name: str, *, events: Iterable[str]) -> Callable[[Handler], Handler]:
    """Register ``handler`` as the consumer ``name`` of the events matching ``events``."""

    def register(handler: Handler) -> Handler:
        _registry[name] = Consumer(name=name, patterns=tuple(events), handler=handler)
        return handler

    return register


def unregister(name: str) -> None:
    _registry.pop(name, None)


def consumers() -> dict[str, Consumer]:
    return dict(_registry)


def emit(
    event_type: str,
    *,
    organization_id: uuid.UUID | None,
    payload: dict[str, Any],
    subject: models.Model | None = None,
) -> Event:
    """Write a domain event and its deliveries in the current transaction."""
    event = Event.objects.create(
        type=event_type,
        organization_id=organization_id,
        payload=payload,
        subject_type=subject._meta.label_lower if subject is not None else "",
        subject_id=str(subject.pk) if subject is not None else "",
    )
    wanted = [c.name for c in _registry.values() if c.wants(event_type)]
    EventDelivery.objects.bulk_create(
        [EventDelivery(event=event, consumer=name) for name in wanted]
    )
    if wanted:
        transaction.on_commit(wake_dispatcher)
    return event


def wake_dispatcher() -> None:
    from .tasks import dispatch_outbox

    try:
        dispatch_outbox.delay()
    except Exception:  # the broker is only a wake-up; the sweeper delivers later
        logger.warning("could not wake the outbox dispatcher; the sweeper will", exc_info=True)


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter: 2, 4, 8 ... seconds, capped at one hour."""
    base = min(2**attempts, 3600)
    return timedelta(seconds=base + random.uniform(0, base / 4))


def claim_due(*, limit: int = 100) -> list[int]:
    """Lease up to ``limit`` due deliveries (SKIP LOCKED, so workers never collide)."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    with transaction.atomic():
        ids = list(
            EventDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .filter(models.Q(lease_until__isnull=True) | models.Q(lease_until__lt=now))
            .order_by("next_attempt_at", "id")
            .values_list("id", flat=True)[:limit]
        )
        EventDelivery.objects.filter(id__in=ids).update(lease_until=lease)
    return ids


def deliver(delivery_id: int) -> str:
    """Run one leased delivery and record the outcome; returns the new status."""
    delivery = EventDelivery.objects.select_related("event").get(pk=delivery_id)
    registered = _registry.get(delivery.consumer)
    try:
        if registered is None:
            raise LookupError(f"no consumer named {delivery.consumer!r} is registered")
        registered.handler(delivery.event)
    except Exception as error:  # any failure: retry with backoff, then dead-letter
        attempts = delivery.attempts + 1
        dead = attempts >= settings.OUTBOX_MAX_ATTEMPTS
        EventDelivery.objects.filter(pk=delivery.pk).update(
            attempts=attempts,
            status=DeliveryStatus.DEAD if dead else DeliveryStatus.PENDING,
            next_attempt_at=timezone.now() + backoff(attempts),
            lease_until=None,
            last_error=f"{type(error).__name__}: {error}"[:4000],
        )
        logger.warning("delivery %s to %s failed (%s)", delivery.pk, delivery.consumer, error)
        return DeliveryStatus.DEAD if dead else DeliveryStatus.PENDING
    EventDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.DELIVERED,
        attempts=delivery.attempts + 1,
        delivered_at=timezone.now(),
        lease_until=None,
        last_error="",
    )
    return DeliveryStatus.DELIVERED


def dispatch(*, limit: int = 100) -> int:
    """Deliver what is due now; returns how many deliveries were attempted."""
    ids = claim_due(limit=limit)
    for delivery_id in ids:
        deliver(delivery_id)
    return len(ids)


def redeliver(*, delivery_ids: Iterable[int]) -> int:
    """Put dead-lettered deliveries back in the queue (admin / portal action)."""
    count = EventDelivery.objects.filter(
        id__in=list(delivery_ids), status=DeliveryStatus.DEAD
    ).update(
        status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=timezone.now(), lease_until=None
    )
    if count:
        transaction.on_commit(wake_dispatcher)
    return count
