"""Dynamic consumers: families of consumer names handled by one registered prefix handler, and
deliveries a consumer adds to the event it is handling (``add_deliveries``)."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.utils import timezone

from apps.core import events
from apps.core.actors import SYSTEM
from apps.core.models import DeliveryStatus, Event, EventDelivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def families(registry, monkeypatch) -> dict[str, events.FamilyHandler]:
    """An empty family registry too (other apps' families do not interfere)."""
    isolated: dict[str, events.FamilyHandler] = {}
    monkeypatch.setattr(events, "_families", isolated)
    return isolated


def _rows(event: Event) -> list[tuple[str, str, int]]:
    return list(
        EventDelivery.objects.filter(event=event)
        .order_by("consumer")
        .values_list("consumer", "status", "attempts")
    )


def _make_due(consumer: str) -> None:
    EventDelivery.objects.filter(consumer=consumer).update(next_attempt_at=timezone.now())


def test_a_family_member_added_to_an_event_is_delivered_to_the_prefix_handler_with_its_suffix(
    families,
) -> None:
    calls: list[tuple[str, str]] = []
    events.consumer_family("hook.")(lambda event, suffix: calls.append((event.type, suffix)))
    event = events.emit("alert.opened", organization_id=None, payload={})

    assert events.add_deliveries(event, ["hook.a", "hook.b"]) == 2
    assert _rows(event) == [("hook.a", "pending", 0), ("hook.b", "pending", 0)]
    assert events.dispatch() == 2

    assert sorted(calls) == [("alert.opened", "a"), ("alert.opened", "b")]
    assert _rows(event) == [("hook.a", "delivered", 1), ("hook.b", "delivered", 1)]


def test_emit_never_creates_a_family_delivery_by_itself(families) -> None:
    events.consumer_family("hook.")(lambda event, suffix: None)

    event = events.emit("alert.opened", organization_id=None, payload={})

    assert _rows(event) == []


def test_adding_the_same_names_again_adds_nothing_and_leaves_their_state_alone(families) -> None:
    events.consumer_family("hook.")(lambda event, suffix: None)
    event = events.emit("alert.opened", organization_id=None, payload={})
    events.add_deliveries(event, ["hook.a"])
    events.dispatch()

    assert events.add_deliveries(event, ["hook.a", "hook.a", "hook.c"]) == 1
    assert events.add_deliveries(event, []) == 0

    assert _rows(event) == [("hook.a", "delivered", 1), ("hook.c", "pending", 0)]


def test_it_refuses_unknown_and_too_long_names_and_writes_nothing(families) -> None:
    events.consumer_family("hook.")(lambda event, suffix: None)
    event = events.emit("alert.opened", organization_id=None, payload={})

    with pytest.raises(LookupError, match=r"no consumer named 'other\.a' is registered"):
        events.add_deliveries(event, ["hook.a", "other.a"])
    with pytest.raises(LookupError):
        events.add_deliveries(event, ["hook."])  # the bare prefix names no member
    with pytest.raises(ValueError, match="longer than 100"):
        events.add_deliveries(event, ["hook." + "x" * 96])

    assert _rows(event) == []


def test_an_exact_consumer_wins_over_a_family_and_the_longest_prefix_wins(families) -> None:
    calls: list[str] = []
    events.consumer("hook.special", events=["nothing.*"])(lambda event: calls.append("exact"))
    events.consumer_family("hook.")(lambda event, suffix: calls.append(f"short:{suffix}"))
    events.consumer_family("hook.long.")(lambda event, suffix: calls.append(f"long:{suffix}"))
    event = events.emit("alert.opened", organization_id=None, payload={})

    events.add_deliveries(event, ["hook.special", "hook.long.x", "hook.other"])
    events.dispatch()

    assert sorted(calls) == ["exact", "long:x", "short:other"]


def test_deliveries_added_by_a_consumer_commit_with_its_delivered_mark(
    families, django_capture_on_commit_callbacks
) -> None:
    seen: list[str] = []
    events.consumer_family("hook.")(lambda event, suffix: seen.append(suffix))
    events.consumer("fan", events=["alert.*"])(
        lambda event: events.add_deliveries(event, ["hook.1", "hook.2"])
    )
    # written by hand: emit() would already have a wake-up pending in this test's transaction
    event = Event.objects.create(type="alert.opened")
    EventDelivery.objects.create(event=event, consumer="fan")

    with django_capture_on_commit_callbacks() as callbacks:
        [lease] = events.claim_due()
        assert events.deliver(lease) == DeliveryStatus.DELIVERED

    assert callbacks == [events.wake_dispatcher]  # the added deliveries wake a dispatcher
    assert _rows(event) == [
        ("fan", "delivered", 1),
        ("hook.1", "pending", 0),
        ("hook.2", "pending", 0),
    ]
    assert events.dispatch() == 2
    assert sorted(seen) == ["1", "2"]


def test_deliveries_added_by_a_consumer_that_then_fails_are_rolled_back_with_it(
    families,
) -> None:
    events.consumer_family("hook.")(lambda event, suffix: None)

    def fan_then_fail(event: Event) -> None:
        events.add_deliveries(event, ["hook.1"])
        raise RuntimeError("after adding")

    events.consumer("fan", events=["alert.*"])(fan_then_fail)
    event = events.emit("alert.opened", organization_id=None, payload={})

    assert events.deliver(events.claim_due()[0]) == DeliveryStatus.PENDING

    assert _rows(event) == [("fan", "pending", 1)]


def test_a_failing_family_member_retries_with_backoff_dies_and_redelivers(
    families, settings
) -> None:
    settings.OUTBOX_MAX_ATTEMPTS = 2
    outcome = {"fail": True}

    def flaky(event: Event, suffix: str) -> None:
        if outcome["fail"]:
            raise ConnectionError(f"endpoint {suffix} is down")

    events.consumer_family("hook.")(flaky)
    event = events.emit("alert.opened", organization_id=None, payload={})
    with transaction.atomic():
        events.add_deliveries(event, ["hook.x"])

    results = []
    for _ in range(2):
        _make_due("hook.x")
        results.append(events.deliver(events.claim_due()[0]))
    dead = EventDelivery.objects.get(consumer="hook.x")

    assert results == [DeliveryStatus.PENDING, DeliveryStatus.DEAD]
    assert (dead.status, dead.attempts, dead.last_error) == (
        "dead",
        2,
        "ConnectionError: endpoint x is down",
    )
    assert events.redeliver(actor=SYSTEM, delivery_ids=[dead.pk]) == 1
    outcome["fail"] = False
    assert events.dispatch() == 1
    assert _rows(event) == [("hook.x", "delivered", 1)]


def test_unregister_removes_a_family(families) -> None:
    events.consumer_family("hook.")(lambda event, suffix: None)
    event = events.emit("alert.opened", organization_id=None, payload={})

    events.unregister("hook.")

    with pytest.raises(LookupError):
        events.add_deliveries(event, ["hook.a"])


def test_an_empty_prefix_is_refused(families) -> None:
    with pytest.raises(ValueError, match="invalid consumer family prefix"):
        events.consumer_family("")
