from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.roles import Role
from apps.core import events
from apps.core.models import DeliveryStatus, Event, EventDelivery
from tests.authz import Call, Case, assert_authz_matrix, error, iso, last_audit
from tests.factories import make_member

pytestmark = pytest.mark.django_db

URL = "/api/v1/events/"
EVENT_VIEWERS = set(Role.values) - {Role.BILLING}
REDELIVERERS = {Role.OWNER, Role.ADMIN}


def delivery_json(delivery: EventDelivery) -> dict[str, Any]:
    delivery.refresh_from_db()
    return {
        "id": delivery.pk,
        "consumer": delivery.consumer,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": iso(delivery.next_attempt_at),
        "delivered_at": iso(delivery.delivered_at),
        "last_error": delivery.last_error,
    }


def event_json(event: Event) -> dict[str, Any]:
    return {
        "id": str(event.pk),
        "created_at": iso(event.created_at),
        "organization": str(event.organization_id),
        "type": event.type,
        "subject_type": event.subject_type,
        "subject_id": event.subject_id,
        "payload": event.payload,
        "deliveries": [delivery_json(d) for d in event.deliveries.order_by("consumer", "id")],
    }


def retail_event(world) -> Event:
    event = events.emit("test.ping", organization_id=world.tree["retail"].pk, payload={"n": 1})
    EventDelivery.objects.create(
        event=event,
        consumer="webhooks",
        status=DeliveryStatus.DEAD,
        attempts=10,
        last_error="ConnectionError: refused",
    )
    EventDelivery.objects.create(
        event=event, consumer="audit-sink", status=DeliveryStatus.DELIVERED
    )
    return event


def deliveries_state(attempt) -> list[tuple[Any, ...]]:
    return list(EventDelivery.objects.order_by("id").values_list("id", "status", "attempts"))


def test_list_matrix(authz_world):
    def expect(attempt, response):
        assert response.json()["results"] == [event_json(attempt.target)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="event.view",
            allowed=EVENT_VIEWERS,
            setup=retail_event,
            request=lambda a: Call("get", URL, {"type": "test."}),
            expect=expect,
            listing=True,
        ),
    )


def test_retrieve_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == event_json(attempt.target)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="event.view",
            allowed=EVENT_VIEWERS,
            setup=retail_event,
            request=lambda a: Call("get", f"{URL}{a.target.pk}/"),
            expect=expect,
        ),
    )


def test_redeliver_matrix(authz_world):
    def expect(attempt, response):
        event = attempt.target
        assert response.json() == event_json(event)
        states = dict(event.deliveries.values_list("consumer", "status"))
        assert states == {"webhooks": "pending", "audit-sink": "delivered"}
        assert event.deliveries.get(consumer="webhooks").attempts == 0
        row = last_audit("event.redeliver")
        assert (row.object_id, row.organization_id, row.changes, row.actor_label) == (
            str(event.pk),
            event.organization_id,
            {"redelivered": [None, ["webhooks"]]},
            attempt.principal.label,
        )

    assert_authz_matrix(
        authz_world,
        Case(
            permission="event.redeliver",
            allowed=REDELIVERERS,
            setup=retail_event,
            request=lambda a: Call("post", f"{URL}{a.target.pk}/redeliver/", {}),
            state=deliveries_state,
            expect=expect,
        ),
    )


def test_it_refuses_to_redeliver_when_nothing_is_dead(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    event = events.emit("test.ping", organization_id=tree["retail"].pk, payload={})
    EventDelivery.objects.create(event=event, consumer="webhooks", status=DeliveryStatus.DELIVERED)
    client = APIClient()
    client.force_login(owner)
    response = client.post(
        f"{URL}{event.pk}/redeliver/", {"consumers": ["webhooks"]}, format="json"
    )
    assert response.status_code == 400
    assert error(response)["fields"] == {
        "consumers": ["This event has no matching dead-lettered delivery."]
    }
    assert EventDelivery.objects.get(event=event).status == "delivered"
