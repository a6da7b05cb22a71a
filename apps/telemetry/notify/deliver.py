"""The outbox consumers that leave our database: channel posts and emails.

``notify.channel.<channel id>``: POST the event to the channel (Standard Webhooks signed JSON,
or a Slack-compatible message). ``notify.email.<notification id>``: send that notification's
email. Each is one outbox delivery: a non-2xx answer, a timeout, a refused address or an SMTP
error raises, so the outbox records the failure and retries with backoff until it becomes a
dead letter (``OUTBOX_MAX_ATTEMPTS``), which ``redeliver`` puts back in the queue.

At least once: a worker that dies after the POST but before its commit posts again; receivers
de-duplicate on ``webhook-id`` (the event id). Timeouts stay far below the outbox lease
(``OUTBOX_LEASE_SECONDS``), so a slow endpoint never makes two workers post at once.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

import httpx
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from apps.core import events
from apps.core.models import Event

from ..choices import ChannelKind, NotificationMedium
from ..models import Notification, NotificationChannel
from . import secrets
from .emails import build_email
from .fanout import CHANNEL_PREFIX, EMAIL_PREFIX
from .messages import body_for
from .policy import TEST_EVENT
from .urlsafety import check_destination

logger = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
USER_AGENT = "Fleetops-Notifications/1.0"


class ChannelDeliveryError(Exception):
    """The endpoint did not accept the message (the outbox retries it)."""


@events.consumer_family(CHANNEL_PREFIX)
def deliver_to_channel(event: Event, channel_id: str) -> None:
    """POST ``event`` to the channel; nothing when the channel was deleted or disabled since
    (a test message is sent even to a disabled channel: someone asked for it)."""
    channel = NotificationChannel.objects.filter(pk=uuid.UUID(channel_id)).first()
    if channel is None or (not channel.enabled and event.type != TEST_EVENT):
        logger.info("channel %s is gone or disabled: event %s not sent", channel_id, event.pk)
        return
    post(channel, event)


def post(channel: NotificationChannel, event: Event) -> httpx.Response:
    """Send one event to one channel; raises unless the endpoint answered 2xx."""
    check_destination(channel.url)  # again: what a name resolves to may have changed
    body = body_for(channel.kind, event)
    headers = {"content-type": "application/json", "user-agent": USER_AGENT}
    if channel.kind == ChannelKind.WEBHOOK:
        headers.update(signature_headers(channel, str(event.pk), body, timezone.now()))
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
        response = client.post(channel.url, content=body, headers=headers)
    if not response.is_success:
        snippet = response.text[:200].replace("\n", " ")
        raise ChannelDeliveryError(f"HTTP {response.status_code} from the endpoint: {snippet}")
    return response


def signature_headers(
    channel: NotificationChannel, message_id: str, body: bytes, at: datetime
) -> dict[str, str]:
    """Standard Webhooks headers. After a rotation the previous secret signs too (a second
    ``v1,`` signature) until its grace period ends, so receivers switch without a gap."""
    at = at.replace(microsecond=0)
    keys = [secrets.decrypt(channel.secret_encrypted)]
    expires = channel.previous_secret_expires_at
    if expires is not None and expires > at:
        keys.append(secrets.decrypt(channel.previous_secret_encrypted))
    keys = [key for key in keys if key]
    if not keys:
        raise ChannelDeliveryError("the channel has no signing secret")
    payload = body.decode()
    signature = " ".join(Webhook(key).sign(message_id, at, payload) for key in keys)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


@events.consumer_family(EMAIL_PREFIX)
def send_email(event: Event, notification_id: str) -> None:
    """Send one email notification once: ``sent_at`` is set in the delivery's transaction."""
    notification = (
        Notification.objects.select_for_update(of=("self",))
        .select_related("user", "organization")
        .filter(pk=uuid.UUID(notification_id), medium=NotificationMedium.EMAIL)
        .first()
    )
    if notification is None or notification.sent_at is not None:
        return
    build_email(notification, event).send()
    Notification.objects.filter(pk=notification.pk).update(sent_at=timezone.now())
