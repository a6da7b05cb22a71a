"""Where notifications go: per-user preferences and inbox, and organization channels."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.core.ids import uuid7
from apps.core.models import OrganizationOwned

from ..choices import ChannelKind, NotificationMedium, Severity

__all__ = ["Notification", "NotificationChannel", "NotificationPreference"]


class NotificationChannel(OrganizationOwned):
    """An organization's outbound channel: a Standard Webhooks endpoint or a Slack-compatible
    incoming webhook. Each delivery is an outbox delivery (retries, backoff, dead letters).
    ``secret`` is the Standard Webhooks signing secret (``whsec_...``), stored encrypted. After a
    rotation the previous secret also signs (a second signature in the header) until
    ``previous_secret_expires_at``, so receivers can switch without losing a message."""

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=ChannelKind.choices)
    url = models.URLField(max_length=1000)
    secret_encrypted = models.BinaryField(default=b"", editable=False)
    previous_secret_encrypted = models.BinaryField(default=b"", editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    min_severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.INFO)
    # event types (fnmatch patterns) this channel receives
    events = models.JSONField(default=list, blank=True)

    scope_resource = "notificationchannel"

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="telemetry_channel_name")
        ]

    def __str__(self) -> str:
        return self.name


class NotificationPreference(models.Model):
    """One user's choices: which media, from which severity, and quiet hours (in their time
    zone) during which only critical alerts are emailed."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="notification_preference",
    )
    portal = models.BooleanField(default=True)
    email = models.BooleanField(default=True)
    min_severity = models.CharField(
        max_length=16, choices=Severity.choices, default=Severity.WARNING
    )
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"preferences of {self.user_id}"


class Notification(models.Model):
    """One notification to one user (the portal inbox, and the record of an email sent).

    Unique per (event, user, medium): a redelivered event never notifies twice."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications"
    )
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    event = models.ForeignKey(
        "core.Event", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    medium = models.CharField(max_length=8, choices=NotificationMedium.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.INFO)
    title = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    read_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "user", "medium"], name="telemetry_notification_once"
            )
        ]
        indexes = [
            models.Index(
                fields=["user", "-created_at"],
                name="telemetry_inbox_unread",
                condition=models.Q(read_at=None, medium="portal"),
            ),
            models.Index(fields=["user", "-created_at"], name="telemetry_inbox"),
        ]

    def __str__(self) -> str:
        return self.title
