"""Messages to devices over MQTT, kept as outbox rows until the broker has them
(``apps.devices.downlinks``)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

__all__ = ["Downlink", "DownlinkState"]


class DownlinkState(models.TextChoices):
    PENDING = "pending", "Pending"
    PUBLISHED = "published", "Published"  # the broker acknowledged it (QoS 1)
    SUPERSEDED = "superseded", "Superseded"  # a newer message for the same topic replaced it
    EXPIRED = "expired", "Expired"  # its expiry passed before it could be published


class Downlink(models.Model):
    """One message for one device's topic, written in the transaction of the change that
    causes it and published at least once after commit."""

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    device = models.ForeignKey(
        "devices.Device", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    topic = models.CharField(max_length=300)
    payload = models.BinaryField()
    retain = models.BooleanField(default=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    ref_type = models.CharField(max_length=32, blank=True)
    ref_id = models.CharField(max_length=100, blank=True)
    state = models.CharField(
        max_length=10, choices=DownlinkState.choices, default=DownlinkState.PENDING
    )
    created_at = models.DateTimeField(default=timezone.now)
    published_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(  # the publisher's queue, in order
                fields=["id"],
                condition=models.Q(state="pending"),
                name="devices_downlink_pending",
            ),
            models.Index(  # superseding: pending rows of one device's topic
                fields=["device", "topic"],
                condition=models.Q(state="pending"),
                name="devices_downlink_topic",
            ),
            models.Index(fields=["device", "id"], name="devices_downlink_device"),
        ]

    def __str__(self) -> str:
        return f"{self.topic} ({self.state})"
