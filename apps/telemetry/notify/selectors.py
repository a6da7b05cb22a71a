"""Reads of notification channels (always scoped to the actor)."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.accounts.models import Organization
from apps.core.actors import Actor
from apps.core.models import DeliveryStatus, EventDelivery

from ..models import NotificationChannel
from .fanout import channel_consumer

RECENT_TROUBLES = 20


def channel_list(
    *, actor: Actor, organization: Organization | None = None, action: str = "view"
) -> QuerySet[NotificationChannel]:
    """Channels the actor may ``action``; of one organization only when given."""
    channels = NotificationChannel.objects.for_actor(actor, action)
    if organization is not None:
        channels = channels.filter(organization=organization)
    return channels


def channel_troubles(*, channel: NotificationChannel) -> list[EventDelivery]:
    """The channel's deliveries that are failing (pending after an attempt) or dead, newest
    first: read from the (status, consumer) index, whatever the number delivered."""
    return list(
        EventDelivery.objects.filter(
            consumer=channel_consumer(channel.pk),
            status__in=[DeliveryStatus.PENDING, DeliveryStatus.DEAD],
        )
        .select_related("event")
        .order_by("-id")[:RECENT_TROUBLES]
    )
