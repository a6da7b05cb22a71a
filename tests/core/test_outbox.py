from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection, transaction
from django.utils import timezone

from apps.accounts.roles import Role
from apps.core import events, tasks
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, DeliveryStatus, Event, EventDelivery
from tests.factories import actor, make_member

pytestmark = pytest.mark.django_db


def _delivery(consumer: str) -> EventDelivery:
    return EventDelivery.objects.get(consumer=consumer)


def _make_due(consumer: str) -> None:
    EventDelivery.objects.filter(consumer=consumer).update(next_attempt_at=timezone.now())


def _fail(event: Event) -> None:
    raise RuntimeError("boom")


def _recorder(calls: list[str], name: str) -> events.Handler:
    return lambda event: calls.append(name)


# --- emit --------------------------------------------------------------------------------------


def test_emit_writes_the_event_and_one_delivery_per_matching_consumer(received, tree) -> None:
    acme = tree["acme"]
    events.consumer("alerts", events=["alert.*"])(_fail)

    event = events.emit("device.created", organization_id=acme.pk, payload={"n": 1}, subject=acme)

    stored = Event.objects.get(pk=event.pk)
    assert (stored.type, stored.organization_id, stored.payload) == (
        "device.created",
        acme.pk,
        {"n": 1},
    )
    assert (stored.subject_type, stored.subject_id) == ("accounts.organization", str(acme.pk))
    assert list(
        EventDelivery.objects.filter(event=event)
        .order_by("consumer")
        .values_list("consumer", "status", "attempts", "lease_until")
    ) == [("also_good", "pending", 0, None), ("good", "pending", 0, None)]


def test_emit_wakes_the_dispatcher_once_after_commit(
    received, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        events.emit("device.created", organization_id=None, payload={})

    assert callbacks == [events.wake_dispatcher]


def test_emit_sends_one_wakeup_per_transaction_however_many_events(
    received, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
        for _ in range(5):
            events.emit("device.created", organization_id=None, payload={})

    assert callbacks == [events.wake_dispatcher]
    assert EventDelivery.objects.count() == 10


def test_emit_wakes_again_after_a_rolled_back_savepoint_dropped_the_wakeup(
    received, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            events.emit("device.created", organization_id=None, payload={})
            raise RuntimeError("rolled back")
        events.emit("device.created", organization_id=None, payload={})

    assert callbacks == [events.wake_dispatcher]
    assert EventDelivery.objects.count() == 2


def test_emit_for_an_event_nobody_consumes_writes_no_delivery_and_no_wakeup(
    received, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        event = events.emit("billing.invoiced", organization_id=None, payload={})

    assert callbacks == []
    assert Event.objects.filter(pk=event.pk).count() == 1
    assert EventDelivery.objects.count() == 0


def test_emit_writes_nothing_when_the_callers_transaction_rolls_back(
    received, django_capture_on_commit_callbacks
) -> None:
    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        events.emit("device.created", organization_id=None, payload={})
        raise RuntimeError("the caller's change failed")

    assert callbacks == []
    assert (Event.objects.count(), EventDelivery.objects.count()) == (0, 0)


# --- dispatch and retries ----------------------------------------------------------------------


def test_dispatch_delivers_every_due_delivery_once(received) -> None:
    events.emit("device.created", organization_id=None, payload={})
    events.emit("device.deleted", organization_id=None, payload={})

    assert events.dispatch() == 3
    assert events.dispatch() == 0

    assert sorted(received) == [
        ("also_good", "device.created"),
        ("good", "device.created"),
        ("good", "device.deleted"),
    ]
    rows = EventDelivery.objects.values_list("status", "attempts", "lease_until", "last_error")
    assert list(rows) == [("delivered", 1, None, "")] * 3
    assert EventDelivery.objects.filter(delivered_at__isnull=True).count() == 0


def test_the_dispatcher_task_delivers_everything_due(received) -> None:
    for _ in range(3):
        events.emit("device.updated", organization_id=None, payload={})

    assert tasks.dispatch_outbox() == 3

    assert list(EventDelivery.objects.values_list("status", flat=True)) == ["delivered"] * 3


def test_a_failing_consumer_is_retried_with_backoff_and_others_still_get_the_event(
    received,
) -> None:
    events.consumer("broken", events=["device.*"])(_fail)
    events.emit("device.created", organization_id=None, payload={})
    before = timezone.now()

    assert events.dispatch() == 3

    assert sorted(received) == [("also_good", "device.created"), ("good", "device.created")]
    broken = _delivery("broken")
    assert (broken.status, broken.attempts, broken.lease_until, broken.last_error) == (
        "pending",
        1,
        None,
        "RuntimeError: boom",
    )
    assert before + timedelta(seconds=2) <= broken.next_attempt_at
    assert broken.next_attempt_at <= timezone.now() + timedelta(seconds=2.5)
    assert events.dispatch() == 0  # not due before its backoff


def test_it_dead_letters_a_delivery_after_the_maximum_attempts(registry, settings) -> None:
    settings.OUTBOX_MAX_ATTEMPTS = 3
    events.consumer("broken", events=["device.*"])(_fail)
    events.emit("device.created", organization_id=None, payload={})

    outcomes = []
    waits = []
    for _ in range(3):
        _make_due("broken")
        started = timezone.now()
        outcomes.append(events.deliver(events.claim_due()[0]))
        waits.append((_delivery("broken").next_attempt_at - started).total_seconds())

    assert outcomes == [DeliveryStatus.PENDING, DeliveryStatus.PENDING, DeliveryStatus.DEAD]
    assert [
        base <= wait <= base * 1.25 + 1 for wait, base in zip(waits, (2, 4, 8), strict=True)
    ] == [True, True, True]
    dead = _delivery("broken")
    assert (dead.status, dead.attempts, dead.last_error) == ("dead", 3, "RuntimeError: boom")
    _make_due("broken")
    assert events.claim_due() == []


def test_backoff_doubles_from_two_seconds_and_is_capped_at_an_hour() -> None:
    for attempts, base in ((1, 2), (2, 4), (5, 32), (11, 2048), (12, 3600), (40, 3600)):
        seconds = events.backoff(attempts).total_seconds()
        assert base <= seconds <= base * 1.25, (attempts, seconds)


def test_an_unregistered_consumer_fails_only_its_own_delivery(received) -> None:
    event = events.emit("device.created", organization_id=None, payload={})
    EventDelivery.objects.create(event=event, consumer="gone")

    assert events.dispatch() == 3

    assert sorted(received) == [("also_good", "device.created"), ("good", "device.created")]
    gone = _delivery("gone")
    assert (gone.status, gone.attempts, gone.last_error) == (
        "pending",
        1,
        "LookupError: no consumer named 'gone' is registered",
    )


def test_a_consumer_whose_sql_fails_rolls_back_its_writes_and_breaks_no_other_delivery(
    received,
) -> None:
    def bad_sql(event: Event) -> None:
        events.emit("audit.side_effect", organization_id=None, payload={})
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    # "a_bad" sorts first, so the good consumers run after it on the same connection.
    events.consumer("a_bad", events=["device.*"])(bad_sql)
    events.emit("device.created", organization_id=None, payload={})

    assert events.dispatch() == 3

    assert sorted(received) == [("also_good", "device.created"), ("good", "device.created")]
    bad = _delivery("a_bad")
    assert (bad.status, bad.attempts) == ("pending", 1)
    assert bad.last_error.startswith('ProgrammingError: relation "no_such_table" does not exist')
    assert Event.objects.filter(type="audit.side_effect").count() == 0


def test_a_soft_time_limit_counts_as_an_attempt_stops_the_batch_and_releases_the_rest(
    received,
) -> None:
    def out_of_time(event: Event) -> None:
        raise SoftTimeLimitExceeded()

    events.consumer("a_slow", events=["device.*"])(out_of_time)
    events.emit("device.created", organization_id=None, payload={})

    with pytest.raises(SoftTimeLimitExceeded):
        events.dispatch()

    assert received == []
    assert list(
        EventDelivery.objects.order_by("consumer").values_list(
            "consumer", "status", "attempts", "lease_until", "last_error"
        )
    ) == [
        ("a_slow", "pending", 1, None, "SoftTimeLimitExceeded: SoftTimeLimitExceeded()"),
        ("also_good", "pending", 0, None, ""),
        ("good", "pending", 0, None, ""),
    ]
    assert len(events.claim_due()) == 2


def test_the_dispatcher_hands_over_when_its_time_budget_is_spent(
    received, isolated_broker, monkeypatch
) -> None:
    monkeypatch.setattr(tasks, "DISPATCH_BUDGET", timedelta(0))
    events.emit("device.updated", organization_id=None, payload={})

    assert tasks.dispatch_outbox() == 0

    assert isolated_broker.llen("celery") == 1
    assert list(EventDelivery.objects.values_list("status", flat=True)) == ["pending"]


# --- leases ------------------------------------------------------------------------------------


def test_a_stale_worker_does_not_run_a_delivery_another_worker_reclaimed(received) -> None:
    events.emit("device.updated", organization_id=None, payload={})
    [stale] = events.claim_due()
    EventDelivery.objects.update(lease_until=timezone.now() - timedelta(seconds=1))  # expired
    [current] = events.claim_due()

    assert events.deliver(stale) is None
    assert received == []
    assert events.deliver(current) == DeliveryStatus.DELIVERED
    assert received == [("good", "device.updated")]


@pytest.mark.django_db(transaction=True)
def test_a_delivery_whose_lease_is_lost_mid_handler_rolls_back_and_records_nothing(
    registry,
) -> None:
    reclaimed = timezone.now() + timedelta(minutes=5)

    def reclaim_elsewhere() -> None:  # another worker, on its own connection, takes the row
        try:
            EventDelivery.objects.filter(consumer="slow").update(lease_until=reclaimed)
        finally:
            connection.close()

    def slow(event: Event) -> None:
        Event.objects.create(type="audit.side_effect")
        thread = threading.Thread(target=reclaim_elsewhere)
        thread.start()
        thread.join(timeout=10)

    events.consumer("slow", events=["device.*"])(slow)
    EventDelivery.objects.create(event=Event.objects.create(type="device.updated"), consumer="slow")

    assert events.deliver(events.claim_due()[0]) is None

    row = _delivery("slow")
    assert (row.status, row.attempts, row.lease_until) == ("pending", 0, reclaimed)
    assert Event.objects.filter(type="audit.side_effect").count() == 0


def test_dispatch_past_its_deadline_releases_the_leases_it_did_not_use(received) -> None:
    events.emit("device.created", organization_id=None, payload={})

    assert events.dispatch(deadline=timezone.now() - timedelta(seconds=1)) == 2

    assert received == []
    assert (
        list(EventDelivery.objects.values_list("status", "attempts", "lease_until"))
        == [("pending", 0, None)] * 2
    )
    assert len(events.claim_due()) == 2


def test_claim_due_takes_due_and_expired_lease_rows_only(registry) -> None:
    now = timezone.now()
    event = Event.objects.create(type="device.created")
    kinds: dict[str, dict[str, Any]] = {
        "due": {},
        "expired": {"lease_until": now - timedelta(seconds=1)},
        "leased": {"lease_until": now + timedelta(minutes=1)},
        "later": {"next_attempt_at": now + timedelta(minutes=1)},
        "delivered": {"status": DeliveryStatus.DELIVERED},
        "dead": {"status": DeliveryStatus.DEAD},
    }
    rows = {
        name: EventDelivery.objects.create(event=event, consumer=name, **fields)
        for name, fields in kinds.items()
    }

    assert sorted(row.consumer for row in events.due_deliveries()) == ["due", "expired"]
    claimed = events.claim_due()

    assert sorted(lease.delivery_id for lease in claimed) == sorted(
        [rows["due"].pk, rows["expired"].pk]
    )
    assert {lease.until for lease in claimed} == set(
        EventDelivery.objects.filter(consumer__in=["due", "expired"]).values_list(
            "lease_until", flat=True
        )
    )
    assert events.claim_due() == []


# --- redeliver ---------------------------------------------------------------------------------


def test_redeliver_puts_dead_letters_back_and_audits_once_per_event(registry, tree) -> None:
    acme = tree["acme"]
    delivered_to: list[str] = []
    for name in ("hook", "hook2"):
        events.consumer(name, events=["device.*"])(_recorder(delivered_to, name))
    event = events.emit("device.created", organization_id=acme.pk, payload={})
    EventDelivery.objects.update(status=DeliveryStatus.DEAD, attempts=10)
    alive = EventDelivery.objects.create(event=event, consumer="other")
    dead_ids = [_delivery("hook").pk, _delivery("hook2").pk]

    assert events.redeliver(actor=SYSTEM, delivery_ids=[*dead_ids, alive.pk]) == 2

    assert list(
        EventDelivery.objects.order_by("consumer").values_list(
            "consumer", "status", "attempts", "lease_until"
        )
    ) == [
        ("hook", "pending", 0, None),
        ("hook2", "pending", 0, None),
        ("other", "pending", 0, None),
    ]
    assert AuditLog.objects.filter(action="event.redeliver").values(
        "organization_id", "object_type", "object_id", "actor_label", "source", "changes"
    ).get() == {
        "organization_id": acme.pk,
        "object_type": "core.event",
        "object_id": str(event.pk),
        "actor_label": "system",
        "source": "worker",
        "changes": {"redelivered": [None, ["hook", "hook2"]]},
    }
    events.dispatch()
    assert sorted(delivered_to) == ["hook", "hook2"]


def test_redeliver_ignores_dead_letters_outside_the_actors_scope(registry, tree) -> None:
    owner = actor(make_member(tree["acme"], Role.OWNER))
    viewer = actor(make_member(tree["acme"], Role.VIEWER))
    dead = {}
    for key in ("retail", "globex"):
        event = Event.objects.create(type="device.created", organization=tree[key])
        dead[key] = EventDelivery.objects.create(
            event=event, consumer="hook", status=DeliveryStatus.DEAD
        )
    ids = [row.pk for row in dead.values()]

    assert events.redeliver(actor=viewer, delivery_ids=ids) == 0
    assert events.redeliver(actor=owner, delivery_ids=ids) == 1

    assert {key: EventDelivery.objects.get(pk=row.pk).status for key, row in dead.items()} == {
        "retail": "pending",
        "globex": "dead",
    }
    assert AuditLog.objects.filter(action="event.redeliver").count() == 1


# --- the sweeper -------------------------------------------------------------------------------


def test_the_sweeper_wakes_a_dispatcher_for_due_and_expired_lease_work(
    registry, isolated_broker
) -> None:
    now = timezone.now()
    event = Event.objects.create(type="device.created")
    EventDelivery.objects.create(event=event, consumer="due")
    EventDelivery.objects.create(event=event, consumer="expired", lease_until=now)
    EventDelivery.objects.create(event=event, consumer="leased", lease_until=now + timedelta(1))

    assert tasks.sweep_outbox() == 1

    assert isolated_broker.llen("celery") == 1


def test_the_sweeper_sends_one_wakeup_per_batch_of_due_work(registry, isolated_broker) -> None:
    event = Event.objects.create(type="device.created")
    EventDelivery.objects.bulk_create(
        EventDelivery(event=event, consumer=f"c{index}")
        for index in range(tasks.DISPATCH_BATCH + 1)
    )

    assert tasks.sweep_outbox() == 2

    assert isolated_broker.llen("celery") == 2


def test_the_sweeper_sends_nothing_when_nothing_is_due(registry, isolated_broker) -> None:
    event = Event.objects.create(type="device.created")
    EventDelivery.objects.create(event=event, consumer="sent", status=DeliveryStatus.DELIVERED)

    assert tasks.sweep_outbox() == 0

    assert isolated_broker.llen("celery") == 0


# --- concurrent claimers -----------------------------------------------------------------------


def _pending_deliveries(count: int) -> list[int]:
    event = Event.objects.create(type="device.created")
    rows = EventDelivery.objects.bulk_create(
        EventDelivery(event=event, consumer=f"c{index:03}") for index in range(count)
    )
    return sorted(row.pk for row in rows)


@pytest.mark.django_db(transaction=True)
def test_concurrent_claimers_never_claim_the_same_delivery() -> None:
    expected = _pending_deliveries(60)
    start = threading.Barrier(4)
    claimed: list[list[int]] = [[] for _ in range(4)]

    def claimer(mine: list[int]) -> None:
        try:
            start.wait()
            while leases := events.claim_due(limit=3):
                mine.extend(lease.delivery_id for lease in leases)
        finally:
            connection.close()

    threads = [threading.Thread(target=claimer, args=(mine,)) for mine in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(pk for mine in claimed for pk in mine) == expected
    assert [bool(mine) for mine in claimed].count(True) >= 2


@pytest.mark.django_db(transaction=True)
def test_a_claimer_skips_rows_another_claimer_has_locked() -> None:
    expected = _pending_deliveries(10)
    locked = threading.Event()
    done = threading.Event()

    def holder() -> None:
        try:
            with transaction.atomic():
                list(
                    EventDelivery.objects.select_for_update()
                    .filter(pk__in=expected[:4])
                    .values_list("pk")
                )
                locked.set()
                done.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert locked.wait(timeout=10)
        claimed = events.claim_due(limit=100)
    finally:
        done.set()
        thread.join(timeout=30)

    assert sorted(lease.delivery_id for lease in claimed) == expected[4:]
    assert sorted(lease.delivery_id for lease in events.claim_due(limit=100)) == expected[:4]
