"""Domain events: an outbox written in the caller's transaction, delivered at least once.

``emit()`` writes an ``Event`` row and one ``EventDelivery`` row per registered consumer whose
patterns match, inside the caller's transaction, and after commit wakes the dispatcher. The
database rows are the source of truth; the Celery message is only a wake-up, so a lost message
or a dead worker delays delivery but never loses it: the periodic sweeper
(``core.sweep_outbox``) wakes a dispatcher whenever something is due or its lease expired.

How a delivery runs:

- ``claim_due()`` leases a batch with ``SELECT ... FOR UPDATE SKIP LOCKED`` and stamps each row
  with ``lease_until``. That timestamp is also the lease's *fencing token*: whoever re-claims
  an expired lease writes a later one, so a stale worker can tell it lost the row.
- ``deliver()`` first renews the lease (compare-and-set on the token, so a slow batch never
  runs a row someone else already took), then runs the handler inside its own transaction and
  marks the row delivered *in that same transaction*, again only if the token still matches.
  A consumer's database writes therefore commit together with its "delivered" mark: a worker
  killed mid-delivery rolls both back and the row is delivered again after its lease expires.
  If the lease was lost meanwhile, the handler's writes are rolled back and the outcome is left
  to the worker that holds the row now.
- A failure (any ``Exception``, an unregistered consumer included) is recorded on that delivery
  only: ``attempts`` grows, ``next_attempt_at`` moves by exponential backoff with jitter, and
  after ``settings.OUTBOX_MAX_ATTEMPTS`` the row becomes a dead letter until ``redeliver()``.
  The handler's transaction is rolled back and a broken connection is dropped, so one consumer
  can never break the deliveries of the others.

Delivery is at least once, not exactly once: side effects outside our database (an HTTP call)
may happen twice when a worker dies after them or a lease expires during them. Consumers must
be idempotent (key their effects by the event id). Register one with::

    @consumer("notifications", events=["alert.*"])
    def notify(event: Event) -> None: ...

Dynamic consumers: a handler registered for a *family* of names (``@consumer_family("notify.
channel.")``) handles every delivery whose consumer name starts with that prefix and receives the
rest of the name (a channel id, say). ``emit()`` never creates such deliveries: a consumer adds
them to the event it is handling with ``add_deliveries(event, names)``, in its own delivery's
transaction, so they exist exactly when that delivery is recorded as done. They then follow the
same lease, retries, backoff, dead letters and redelivery as any other delivery.
"""

from __future__ import annotations

import fnmatch
import logging
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from . import audit
from .actors import Actor
from .models import DeliveryStatus, Event, EventDelivery

logger = logging.getLogger(__name__)

Handler = Callable[[Event], None]
FamilyHandler = Callable[[Event, str], None]
MAX_BACKOFF_SECONDS = 3600
CONSUMER_NAME_MAX_LENGTH = 100  # EventDelivery.consumer


@dataclass(frozen=True)
class Consumer:
    name: str
    patterns: tuple[str, ...]
    handler: Handler

    def wants(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.patterns)


@dataclass(frozen=True)
class Lease:
    """A claimed delivery and the ``lease_until`` value that proves the claim is ours."""

    delivery_id: int
    until: datetime


class LeaseLost(Exception):
    """Another worker re-claimed the delivery after our lease expired."""


_registry: dict[str, Consumer] = {}
_families: dict[str, FamilyHandler] = {}


def consumer(name: str, *, events: Iterable[str]) -> Callable[[Handler], Handler]:
    """Register ``handler`` as the consumer ``name`` of the events matching ``events``."""

    def register(handler: Handler) -> Handler:
        _registry[name] = Consumer(name=name, patterns=tuple(events), handler=handler)
        return handler

    return register


def consumer_family(prefix: str) -> Callable[[FamilyHandler], FamilyHandler]:
    """Register ``handler(event, suffix)`` for every consumer name that starts with ``prefix``.

    ``emit()`` never delivers to a family by itself; ``add_deliveries()`` names its members.
    """
    if not prefix:
        raise ValueError(f"invalid consumer family prefix {prefix!r}")

    def register(handler: FamilyHandler) -> FamilyHandler:
        _families[prefix] = handler
        return handler

    return register


def unregister(name: str) -> None:
    _registry.pop(name, None)
    _families.pop(name, None)


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
    wanted = sorted(c.name for c in _registry.values() if c.wants(event_type))
    EventDelivery.objects.bulk_create(
        [EventDelivery(event=event, consumer=name) for name in wanted]
    )
    if wanted:
        _wake_after_commit()
    return event


def add_deliveries(event: Event, names: Iterable[str]) -> int:
    """Add deliveries of ``event`` to the consumers ``names`` in the current transaction.

    For dynamic consumers (a family member, ``notify.channel.<id>``) or any registered consumer.
    A name the event already has a delivery for is left alone, so calling this again for the
    same event (a redelivered consumer) adds nothing. Returns how many deliveries were added;
    wakes the dispatcher after commit when there are some. An unknown name is refused
    (``LookupError``) rather than left to become a dead letter.
    """
    wanted = sorted(set(names))
    if not wanted:
        return 0
    for name in wanted:
        if len(name) > CONSUMER_NAME_MAX_LENGTH:
            raise ValueError(f"consumer name longer than {CONSUMER_NAME_MAX_LENGTH}: {name!r}")
        _handler_for(name)
    existing = set(
        EventDelivery.objects.filter(event=event, consumer__in=wanted).values_list(
            "consumer", flat=True
        )
    )
    missing = [name for name in wanted if name not in existing]
    # ignore_conflicts: a concurrent redelivery of the same consumer may have added them first
    EventDelivery.objects.bulk_create(
        [EventDelivery(event=event, consumer=name) for name in missing], ignore_conflicts=True
    )
    if missing:
        _wake_after_commit()
    return len(missing)


def _wake_after_commit() -> None:
    """One wake-up per transaction, however many events it emits (a bulk change emits many)."""
    pending = transaction.get_connection().run_on_commit
    if not any(entry[1] is wake_dispatcher for entry in pending):
        transaction.on_commit(wake_dispatcher)


def wake_dispatcher() -> None:
    """Send a wake-up to the dispatcher; never fails the caller (the sweeper covers a loss)."""
    from .tasks import dispatch_outbox

    try:
        dispatch_outbox.apply_async(retry=False)
    except Exception:  # the broker is only a wake-up; the sweeper delivers later
        logger.warning("could not wake the outbox dispatcher; the sweeper will", exc_info=True)


def backoff(attempts: int) -> timedelta:
    """Exponential backoff with jitter: 2, 4, 8 ... seconds (+ up to 25%), capped at one hour."""
    base = min(2 ** min(attempts, 12), MAX_BACKOFF_SECONDS)
    return timedelta(seconds=base + random.uniform(0, base / 4))


def due_deliveries(now: datetime | None = None) -> models.QuerySet[EventDelivery]:
    """Pending deliveries whose time has come and that nobody holds a live lease on."""
    now = now or timezone.now()
    return EventDelivery.objects.filter(
        models.Q(lease_until__isnull=True) | models.Q(lease_until__lt=now),
        status=DeliveryStatus.PENDING,
        next_attempt_at__lte=now,
    )


def _lease_until() -> datetime:
    return timezone.now() + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)


def claim_due(*, limit: int = 50) -> list[Lease]:
    """Lease up to ``limit`` due deliveries (SKIP LOCKED, so workers never collide)."""
    until = _lease_until()
    with transaction.atomic():
        ids = list(
            due_deliveries()
            .select_for_update(skip_locked=True)
            .order_by("next_attempt_at", "id")
            .values_list("id", flat=True)[:limit]
        )
        EventDelivery.objects.filter(id__in=ids).update(lease_until=until)
    return [Lease(delivery_id=delivery_id, until=until) for delivery_id in ids]


def _held(lease: Lease) -> models.QuerySet[EventDelivery]:
    return EventDelivery.objects.filter(
        pk=lease.delivery_id, status=DeliveryStatus.PENDING, lease_until=lease.until
    )


def renew(lease: Lease) -> Lease | None:
    """Extend a lease we still hold; ``None`` when another worker took the row or it is done."""
    until = _lease_until()
    if _held(lease).update(lease_until=until) != 1:
        return None
    return Lease(delivery_id=lease.delivery_id, until=until)


def release(leases: Iterable[Lease]) -> int:
    """Give back leases we will not use, so the rows are due again at once."""
    released = 0
    for lease in leases:
        released += _held(lease).update(lease_until=None)
    return released


def deliver(lease: Lease) -> DeliveryStatus | None:
    """Run one leased delivery and record its outcome.

    Returns the row's new status, or ``None`` when the lease was lost (someone else owns the
    row now, or it was no longer pending) and nothing was recorded.
    """
    current = renew(lease)
    if current is None:
        return None
    delivery = EventDelivery.objects.select_related("event").filter(pk=lease.delivery_id).first()
    if delivery is None:  # its event was deleted meanwhile
        return None
    try:
        with transaction.atomic():
            _handler_for(delivery.consumer)(delivery.event)
            _mark_delivered(current, attempts=delivery.attempts + 1)
    except LeaseLost:
        logger.warning("delivery %s: lease lost while delivering; not recorded", delivery.pk)
        return None
    except Exception as error:  # any failure of one consumer stays with its own delivery
        _drop_broken_connection()
        status = _record_failure(current, attempts=delivery.attempts + 1, error=error)
        if isinstance(error, SoftTimeLimitExceeded):
            raise  # the task's time is up: dispatch() releases the rest of its batch
        return status
    return DeliveryStatus.DELIVERED


def _handler_for(name: str) -> Handler:
    registered = _registry.get(name)
    if registered is not None:
        return registered.handler
    # the longest registered prefix wins, so a family may hold a narrower one
    for prefix in sorted(_families, key=len, reverse=True):
        if name.startswith(prefix) and len(name) > len(prefix):
            family, suffix = _families[prefix], name[len(prefix) :]
            return lambda event: family(event, suffix)
    raise LookupError(f"no consumer named {name!r} is registered")


def _mark_delivered(lease: Lease, *, attempts: int) -> None:
    updated = _held(lease).update(
        status=DeliveryStatus.DELIVERED,
        attempts=attempts,
        delivered_at=timezone.now(),
        lease_until=None,
        last_error="",
    )
    if updated != 1:
        raise LeaseLost(lease.delivery_id)


def _record_failure(lease: Lease, *, attempts: int, error: BaseException) -> DeliveryStatus | None:
    dead = attempts >= settings.OUTBOX_MAX_ATTEMPTS
    status = DeliveryStatus.DEAD if dead else DeliveryStatus.PENDING
    updated = _held(lease).update(
        attempts=attempts,
        status=status,
        next_attempt_at=timezone.now() + backoff(attempts),
        lease_until=None,
        last_error=_describe(error)[:4000],
    )
    if updated != 1:
        return None
    log = logger.error if dead else logger.warning
    log("delivery %s failed (attempt %s, now %s): %s", lease.delivery_id, attempts, status, error)
    return status


def _describe(error: BaseException) -> str:
    try:
        return f"{type(error).__name__}: {error}"
    except Exception:  # an exception whose __str__ fails must not stop the bookkeeping
        return type(error).__name__


def _drop_broken_connection() -> None:
    """A consumer may have broken the database connection; reconnect before the next row."""
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


def dispatch(*, limit: int = 50, deadline: datetime | None = None) -> int:
    """Deliver what is due now; returns how many deliveries were claimed.

    With a ``deadline``, stops once it has passed and releases the leases it did not use.
    """
    leases = claim_due(limit=limit)
    for index, lease in enumerate(leases):
        if deadline is not None and timezone.now() >= deadline:
            release(leases[index:])
            break
        try:
            deliver(lease)
        except SoftTimeLimitExceeded:
            release(leases[index + 1 :])
            raise
    return len(leases)


def redeliver(*, actor: Actor, delivery_ids: Iterable[int]) -> int:
    """Put dead letters the actor may redeliver back in the queue; returns how many.

    Rows that are not dead, or whose event is outside the actor's ``event.redeliver`` scope,
    are left alone. Writes one audit record per event, naming the consumers redelivered.
    """
    with transaction.atomic():
        rows = list(
            _redeliverable(actor)
            .select_for_update(of=("self",))
            .select_related("event")
            .filter(id__in=list(delivery_ids), status=DeliveryStatus.DEAD)
            .order_by("id")
        )
        EventDelivery.objects.filter(id__in=[row.pk for row in rows]).update(
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=timezone.now(),
            lease_until=None,
        )
        by_event: dict[uuid.UUID, list[EventDelivery]] = {}
        for row in rows:
            by_event.setdefault(row.event_id, []).append(row)
        for deliveries in by_event.values():
            _audit_redelivery(actor, deliveries)
        if rows:
            _wake_after_commit()
    return len(rows)


def _redeliverable(actor: Actor) -> models.QuerySet[EventDelivery]:
    if actor.is_platform_staff:
        return EventDelivery.objects.all()
    return EventDelivery.objects.filter(
        event__in=Event.objects.for_actor(actor, "redeliver").values("pk")
    )


def _audit_redelivery(actor: Actor, deliveries: list[EventDelivery]) -> None:
    event = deliveries[0].event
    audit.record(
        actor=actor,
        action="event.redeliver",
        obj=event,
        organization_id=event.organization_id,
        changes={"redelivered": [None, sorted(row.consumer for row in deliveries)]},
    )
