from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import Membership, Organization, User
from apps.accounts.roles import Role
from apps.core.models import AuditLog, DeliveryStatus, Event, EventDelivery
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

EVENTS = "/admin/core/event/"
DELIVERIES = "/admin/core/eventdelivery/"


def _staff(client: Client, organization: Organization, role: str = Role.OWNER) -> User:
    user = UserFactory(is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="core", codename__in=["view_event", "view_eventdelivery"]
        )
    )
    Membership.objects.create(organization=organization, user=user, role=role)
    client.force_login(user)
    return user


def _superuser(client: Client) -> User:
    user = UserFactory(is_staff=True, is_superuser=True, email="root@example.com")
    client.force_login(user)
    return user


@pytest.fixture
def dead(tree) -> dict[str, EventDelivery]:
    """A dead-lettered ``hook`` delivery of a ``test.event`` in each of retail and globex."""
    rows = {}
    for key in ("retail", "globex"):
        event = Event.objects.create(type="test.event", organization=tree[key])
        rows[key] = EventDelivery.objects.create(
            event=event, consumer="hook", status=DeliveryStatus.DEAD, attempts=10
        )
    return rows


def _redeliver(client: Client, deliveries: list[EventDelivery]):  # type: ignore[no-untyped-def]
    return client.post(
        DELIVERIES,
        {
            "action": "redeliver_dead_letters",
            "_selected_action": [str(row.pk) for row in deliveries],
        },
        follow=True,
    )


def _statuses(deliveries: dict[str, EventDelivery]) -> dict[str, str]:
    return {key: EventDelivery.objects.get(pk=row.pk).status for key, row in deliveries.items()}


def test_superusers_redeliver_selected_dead_letters_and_the_redelivery_is_audited(
    client, dead, tree
) -> None:
    _superuser(client)
    delivered = EventDelivery.objects.create(
        event=dead["retail"].event, consumer="other", status=DeliveryStatus.DELIVERED
    )

    response = _redeliver(client, [dead["retail"], delivered])

    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "1 dead letter queued for redelivery."
    ]
    assert _statuses(dead) == {"retail": "pending", "globex": "dead"}
    assert EventDelivery.objects.get(pk=delivered.pk).status == "delivered"
    assert AuditLog.objects.filter(action="event.redeliver").values(
        "actor_label", "source", "object_id", "organization_id", "changes"
    ).get() == {
        "actor_label": "root@example.com",
        "source": "admin",
        "object_id": str(dead["retail"].event_id),
        "organization_id": tree["retail"].pk,
        "changes": {"redelivered": [None, ["hook"]]},
    }


def test_staff_redeliver_only_dead_letters_in_their_scope(client, dead, tree) -> None:
    _staff(client, tree["acme"], Role.ADMIN)

    response = _redeliver(client, list(dead.values()))

    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "1 dead letter queued for redelivery."
    ]
    assert _statuses(dead) == {"retail": "pending", "globex": "dead"}


def test_staff_whose_role_cannot_redeliver_are_not_offered_the_action(client, dead, tree) -> None:
    _staff(client, tree["acme"], Role.VIEWER)

    response = _redeliver(client, list(dead.values()))

    assert list(response.context["cl"].model_admin.get_actions(response.wsgi_request)) == []
    assert _statuses(dead) == {"retail": "dead", "globex": "dead"}


def test_staff_see_only_deliveries_and_events_in_their_scope(client, dead, tree) -> None:
    _staff(client, tree["acme"], Role.VIEWER)

    deliveries = client.get(f"{DELIVERIES}?status__exact=dead").context["cl"].result_list
    listed_events = client.get(f"{EVENTS}?type__exact=test.event").context["cl"].result_list

    assert [row.pk for row in deliveries] == [dead["retail"].pk]
    assert [event.pk for event in listed_events] == [dead["retail"].event_id]
    assert client.get(f"{EVENTS}{dead['globex'].event_id}/change/").status_code == 302


def test_the_event_page_shows_its_deliveries_read_only(client, dead) -> None:
    _superuser(client)
    event = dead["retail"].event
    EventDelivery.objects.create(event=event, consumer="webhooks")

    response = client.get(f"{EVENTS}{event.pk}/change/")

    assert response.status_code == 200
    inline = response.context["inline_admin_formsets"][0]
    assert [form.original.consumer for form in inline] == ["hook", "webhooks"]
    assert inline.has_add_permission is False
    assert inline.has_change_permission is False
    assert inline.has_delete_permission is False
    assert client.post(f"{EVENTS}{event.pk}/delete/", {"post": "yes"}).status_code == 403
    assert client.get(f"{EVENTS}add/").status_code == 403


def test_the_delivery_list_costs_the_same_queries_for_many_rows(client, dead, tree) -> None:
    _superuser(client)
    client.get(DELIVERIES)  # warm the session and content-type caches

    with CaptureQueriesContext(connection) as few:
        assert client.get(DELIVERIES).status_code == 200
    for _ in range(20):
        event = Event.objects.create(type="test.event", organization=tree["hospital"])
        EventDelivery.objects.create(event=event, consumer="hook")
    with CaptureQueriesContext(connection) as many:
        assert client.get(DELIVERIES).status_code == 200

    assert len(many.captured_queries) == len(few.captured_queries)
