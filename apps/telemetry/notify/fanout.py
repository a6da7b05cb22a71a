"""The ``notifications`` consumer: one alert event -> inbox rows, emails and channel deliveries.

It runs inside its outbox delivery's transaction, so everything it writes (the notifications
and the deliveries of the emails and channels) commits together with that delivery's
"delivered" mark, or not at all. Running it again for the same event adds nothing: a
notification is unique per (event, user, medium) and a delivery per (event, consumer).

Who: the active members of the alert's organization and of its ancestors whose role grants
``alert.view`` there (a role holds on the whole subtree below its organization). Which
channels: the enabled channels of the alert's organization and of its ancestors (a
manufacturer's channel hears its customers' alerts, as its admins see them), filtered by each
channel's minimum severity and event patterns.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from django.core.exceptions import ObjectDoesNotExist

from apps.accounts.models import Membership, Organization, User
from apps.accounts.roles import ROLE_PERMISSIONS
from apps.core import events
from apps.core.models import Event
from apps.core.scoping import ancestor_ids

from ..choices import NotificationMedium
from ..models import Notification, NotificationChannel
from .messages import alert_path
from .policy import ALERT_EVENTS, AlertNotice, Preference, channel_wants, decide

logger = logging.getLogger(__name__)

CONSUMER = "notifications"
CHANNEL_PREFIX = "notify.channel."
EMAIL_PREFIX = "notify.email."
ALERT_VIEWERS = tuple(sorted(r for r, p in ROLE_PERMISSIONS.items() if "alert.view" in p))


def channel_consumer(channel_id: object) -> str:
    return f"{CHANNEL_PREFIX}{channel_id}"


def email_consumer(notification_id: object) -> str:
    return f"{EMAIL_PREFIX}{notification_id}"


@events.consumer(CONSUMER, events=ALERT_EVENTS)
def fan_out(event: Event) -> None:
    """Notify the people and the channels that should hear of this alert event."""
    if event.organization_id is None:
        logger.warning("alert event %s has no organization; nobody to notify", event.pk)
        return
    organization = Organization.objects.get(pk=event.organization_id)
    notice = AlertNotice.from_event(event.type, event.payload)
    notify_people(event, organization, notice)
    notify_channels(event, organization, notice)


def chain(organization: Organization) -> list[uuid.UUID]:
    """The organization and its ancestors (ids)."""
    return [organization.pk, *ancestor_ids([organization.path])]


def recipients(organization: Organization) -> list[User]:
    """Active users holding ``alert.view`` on ``organization`` through a membership of it or of
    an ancestor (in an active organization), with their preferences; one query."""
    memberships = Membership.objects.filter(
        organization_id__in=chain(organization),
        organization__is_active=True,
        role__in=ALERT_VIEWERS,
    )
    return list(
        User.objects.filter(is_active=True, pk__in=memberships.values("user_id"))
        .select_related("notification_preference")
        .order_by("email")
    )


def preference_of(user: User) -> Preference:
    try:
        stored = user.notification_preference  # type: ignore[attr-defined]
    except ObjectDoesNotExist:
        return Preference()
    return Preference(
        portal=stored.portal,
        email=stored.email,
        min_severity=stored.min_severity,
        quiet_start=stored.quiet_start,
        quiet_end=stored.quiet_end,
        timezone=stored.timezone,
    )


def notify_people(event: Event, organization: Organization, notice: AlertNotice) -> None:
    """Inbox and email notifications; each email is then sent by its own outbox delivery.

    Quiet hours are judged at the event's time, so a retried delivery decides the same.
    """
    at: datetime = event.created_at
    common: dict[str, Any] = {
        "organization": organization,
        "event": event,
        "severity": notice.severity,
        "title": notice.title,
        "body": notice.message,
        "url": alert_path(organization.pk, notice),
    }
    rows: list[Notification] = []
    for user in recipients(organization):
        decision = decide(
            preference=preference_of(user), notice=notice, user_email=user.email, at=at
        )
        if decision.portal:
            rows.append(Notification(user=user, medium=NotificationMedium.PORTAL, **common))
        if decision.email:
            rows.append(Notification(user=user, medium=NotificationMedium.EMAIL, **common))
    Notification.objects.bulk_create(rows, ignore_conflicts=True)
    unsent = Notification.objects.filter(
        event=event, medium=NotificationMedium.EMAIL, sent_at=None
    ).values_list("pk", flat=True)
    events.add_deliveries(event, [email_consumer(pk) for pk in unsent])


def notify_channels(event: Event, organization: Organization, notice: AlertNotice) -> None:
    """One outbox delivery per matching enabled channel, keyed by the event (its id is the
    ``webhook-id`` receivers de-duplicate on)."""
    channels = NotificationChannel.objects.filter(
        organization_id__in=chain(organization), enabled=True
    ).only("id", "events", "min_severity")
    wanted = [
        channel_consumer(channel.pk)
        for channel in channels
        if channel_wants(
            patterns=list(channel.events or []),
            min_severity=channel.min_severity,
            event_type=event.type,
            severity=notice.severity,
        )
    ]
    events.add_deliveries(event, wanted)
