"""What the broker refused: one row per refusal report, for counting and the audit trail.

The device listeners' ACL plugin (``deploy/mosquitto/plugin/``) reports every publish,
subscription or delivery it refuses, aggregated per second; the broker's own log reports
refused connections (failed TLS handshakes, wrong credentials). The connectivity worker stores
each report once (``report_id`` is unique, so a report redelivered after a crash is not counted
twice) and audits it in the same transaction."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.core.ids import uuid7
from apps.core.scoping import ScopedManager

__all__ = ["BrokerRefusal", "RefusalReason"]


class RefusalReason(models.TextChoices):
    PUBLISH = "acl_publish", "Publish outside its topics"
    SUBSCRIBE = "acl_subscribe", "Subscription outside its topics"
    READ = "acl_read", "Delivery outside its topics"
    OVERSIZED = "oversized", "Message over the size limit"
    TLS = "tls_handshake", "TLS handshake failed (unknown CA, revoked, no certificate)"
    CREDENTIALS = "not_authorised", "Wrong username or password"
    OVERFLOW = "overflow", "More distinct refusals than the broker reports per second"


class BrokerRefusal(models.Model):
    """One report of ``count`` identical refusals (same device, reason and topic) within a
    second. ``device``/``organization`` are empty when the broker could not tell who it was
    (a failed handshake, a username that is no device)."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    report_id = models.CharField(max_length=80, unique=True)
    received_at = models.DateTimeField(default=timezone.now)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    device = models.ForeignKey(
        "devices.Device", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    reason = models.CharField(max_length=16, choices=RefusalReason.choices)
    count = models.PositiveIntegerField(default=1)
    username = models.CharField(max_length=200, blank=True)
    address = models.CharField(max_length=64, blank=True)
    topic = models.CharField(max_length=300, blank=True)
    detail = models.CharField(max_length=300, blank=True)

    objects = ScopedManager()
    scope_resource = "credential"

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-received_at"], name="devices_refusal_org"),
            models.Index(fields=["device", "-received_at"], name="devices_refusal_device"),
        ]

    def __str__(self) -> str:
        return f"{self.reason} x{self.count} {self.username or self.address}"
