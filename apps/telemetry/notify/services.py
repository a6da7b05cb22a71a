"""Writes of notification channels: create, change, delete, rotate the secret, send a test.

Each runs in one transaction and writes its audit record in it. A person's inbox and
preferences are in ``inbox``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from apps.accounts.models import Organization
from apps.core import audit, events
from apps.core.actors import Actor
from apps.core.models import Event

from ..choices import ChannelKind, Severity
from ..models import NotificationChannel
from . import secrets
from .fanout import channel_consumer
from .messages import masked_url
from .policy import ALERT_EVENTS, TEST_EVENT
from .urlsafety import UnsafeURL, check_destination

ROTATION_GRACE = timedelta(hours=24)
MAX_PATTERNS = 20
PATTERN = re.compile(r"^[a-z0-9_.*?\[\]-]{1,100}$")
AUDITED = ("name", "url", "enabled", "min_severity", "events")


@dataclass(frozen=True)
class IssuedChannel:
    """A channel and its signing secret in clear: returned on creation and rotation only."""

    channel: NotificationChannel
    secret: str


def _validate_url(url: str) -> str:
    try:
        check_destination(url.strip())
    except UnsafeURL as error:
        raise ValidationError({"url": str(error)}) from error
    return url.strip()


def _validate_patterns(patterns: list[str]) -> list[str]:
    """Event patterns (fnmatch) that each match at least one alert event; [] means all."""
    if len(patterns) > MAX_PATTERNS:
        raise ValidationError({"events": f"At most {MAX_PATTERNS} patterns."})
    cleaned = sorted({pattern.strip() for pattern in patterns})
    for pattern in cleaned:
        if not PATTERN.match(pattern) or not fnmatch.filter(ALERT_EVENTS, pattern):
            raise ValidationError(
                {"events": f"{pattern!r} matches none of {', '.join(ALERT_EVENTS)}."}
            )
    return cleaned


def _validate_secret(secret: str) -> str:
    try:
        Webhook(secret)
    except Exception as error:  # the library raises several kinds for a bad secret
        raise ValidationError({"secret": "Not a valid whsec_ secret."}) from error
    if not secret.startswith(secrets.PREFIX):
        raise ValidationError({"secret": "Must start with whsec_."})
    return secret


def _name_taken(organization: Organization, name: str, exclude: Any = None) -> bool:
    found = NotificationChannel.objects.filter(organization=organization, name=name)
    return found.exclude(pk=exclude).exists() if exclude else found.exists()


def _audit_view(channel: NotificationChannel) -> dict[str, Any]:
    return {
        "name": channel.name,
        "url": masked_url(channel.kind, channel.url),
        "enabled": channel.enabled,
        "min_severity": channel.min_severity,
        "events": list(channel.events),
    }


@transaction.atomic
def channel_create(
    *,
    actor: Actor,
    organization: Organization,
    name: str,
    kind: str,
    url: str,
    enabled: bool = True,
    min_severity: str = Severity.INFO,
    events: list[str] | None = None,
    secret: str = "",
) -> IssuedChannel:
    """Create a channel; a webhook channel gets a signing secret (given, or generated)."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "This field may not be blank."})
    if _name_taken(organization, name):
        raise ValidationError({"name": "A channel with this name already exists here."})
    if kind == ChannelKind.SLACK and secret:
        raise ValidationError({"secret": "Slack-compatible channels are not signed."})
    if kind == ChannelKind.WEBHOOK:
        secret = _validate_secret(secret) if secret else secrets.generate()
    channel = NotificationChannel.objects.create(
        organization=organization,
        name=name,
        kind=kind,
        url=_validate_url(url),
        enabled=enabled,
        min_severity=min_severity,
        events=_validate_patterns(events or []),
        secret_encrypted=secrets.encrypt(secret) if secret else b"",
    )
    changes = {key: [None, value] for key, value in _audit_view(channel).items()}
    audit.record(
        actor=actor,
        action="notificationchannel.create",
        obj=channel,
        changes={**changes, "kind": [None, kind]},
    )
    return IssuedChannel(channel=channel, secret=secret)


@transaction.atomic
def channel_update(
    *,
    actor: Actor,
    channel: NotificationChannel,
    name: str | None = None,
    url: str | None = None,
    enabled: bool | None = None,
    min_severity: str | None = None,
    events: list[str] | None = None,
) -> NotificationChannel:
    """Change what is given (``None`` leaves a field alone); the kind never changes."""
    channel = NotificationChannel.objects.select_for_update(of=("self",)).get(pk=channel.pk)
    before = _audit_view(channel)
    if name is not None:
        name = name.strip()
        if not name:
            raise ValidationError({"name": "This field may not be blank."})
        if _name_taken(channel.organization, name, exclude=channel.pk):
            raise ValidationError({"name": "A channel with this name already exists here."})
        channel.name = name
    if url is not None:
        channel.url = _validate_url(url)
    if enabled is not None:
        channel.enabled = enabled
    if min_severity is not None:
        channel.min_severity = min_severity
    if events is not None:
        channel.events = _validate_patterns(events)
    channel.save()
    changes = audit.diff(before, _audit_view(channel))
    if changes:
        audit.record(actor=actor, action="notificationchannel.change", obj=channel, changes=changes)
    return channel


@transaction.atomic
def channel_delete(*, actor: Actor, channel: NotificationChannel) -> None:
    """Delete a channel. Its pending deliveries then find nothing to send and end delivered."""
    audit.record(
        actor=actor,
        action="notificationchannel.delete",
        obj=channel,
        changes={key: [value, None] for key, value in _audit_view(channel).items()},
    )
    NotificationChannel.objects.filter(pk=channel.pk).delete()


@transaction.atomic
def channel_rotate_secret(*, actor: Actor, channel: NotificationChannel) -> IssuedChannel:
    """A new signing secret; the previous one still signs for ``ROTATION_GRACE``."""
    channel = NotificationChannel.objects.select_for_update(of=("self",)).get(pk=channel.pk)
    if channel.kind != ChannelKind.WEBHOOK:
        raise ValidationError({"kind": "Only webhook channels have a signing secret."})
    secret = secrets.generate()
    channel.previous_secret_encrypted = channel.secret_encrypted
    channel.previous_secret_expires_at = timezone.now() + ROTATION_GRACE
    channel.secret_encrypted = secrets.encrypt(secret)
    channel.save()
    audit.record(
        actor=actor,
        action="notificationchannel.rotate_secret",
        obj=channel,
        changes={"previous_secret_expires_at": [None, channel.previous_secret_expires_at]},
    )
    return IssuedChannel(channel=channel, secret=secret)


@transaction.atomic
def channel_send_test(*, actor: Actor, channel: NotificationChannel) -> Event:
    """Queue a test message to the channel through the outbox (same retries and dead
    letters as an alert); the returned event shows the delivery's fate."""
    event = events.emit(
        TEST_EVENT,
        organization_id=channel.organization_id,
        payload={"channel_id": str(channel.pk), "channel": channel.name, "by": actor.label},
        subject=channel,
    )
    events.add_deliveries(event, [channel_consumer(channel.pk)])
    audit.record(
        actor=actor,
        action="notificationchannel.test",
        obj=channel,
        changes={"event": [None, str(event.pk)]},
    )
    return event
