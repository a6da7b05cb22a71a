"""Messages devices upload over HTTPS (``/device/v1/heartbeat``, ``telemetry``, ``events``),
queued for the telemetry pipeline.

A device numbers its messages with ``boot`` (incremented on every boot) and ``seq``
(incremented per message within a boot), so a resent message is recognised: the unique
constraint stores it once (``INSERT ... ON CONFLICT DO NOTHING``) and the device still gets its
acknowledgement. The pipeline claims rows with ``processed_at IS NULL``."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.core.ids import uuid7

__all__ = ["UplinkKind", "UplinkMessage"]


class UplinkKind(models.TextChoices):
    HEARTBEAT = "heartbeat", "Heartbeat"
    TELEMETRY = "telemetry", "Telemetry"
    EVENTS = "events", "Events"


class UplinkMessage(models.Model):
    """One message a device uploaded over HTTPS, waiting for (or done by) the pipeline."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    device = models.ForeignKey(
        "devices.Device", on_delete=models.CASCADE, related_name="uplink_messages"
    )
    kind = models.CharField(max_length=16, choices=UplinkKind.choices)
    boot = models.BigIntegerField()
    seq = models.BigIntegerField()
    payload = models.JSONField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["device", "kind", "boot", "seq"], name="devices_uplink_once"
            )
        ]
        indexes = [
            # the pipeline's queue: unprocessed rows in arrival order
            models.Index(
                fields=["id"],
                condition=models.Q(processed_at=None),
                name="devices_uplink_pending",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.device_id} {self.boot}/{self.seq}"
