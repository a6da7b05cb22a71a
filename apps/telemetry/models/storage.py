"""Stored telemetry: samples and device events (time-partitioned), latest values, dead letters.

``telemetry_sample`` and ``telemetry_device_event`` are PostgreSQL declarative range partitions
by time, created by migration SQL (Django cannot declare a partitioned table) and maintained by
``apps.telemetry.partitions``; the models here are unmanaged views of them for reads. Their
primary key holds the partition key (``ts``) because a unique index on a partitioned table must:
a message sent twice carries the same ``ts``, so ``(device, ts, kind, boot, seq, idx)`` is the
de-duplication key and also serves "one device over a time range" reads.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.core.ids import uuid7
from apps.core.scoping import ScopedManager

from ..choices import DeadLetterReason, DeadLetterStatus, SampleKind, Source

__all__ = ["DeadLetter", "DeviceEvent", "LatestValues", "TelemetrySample"]

TOPIC_LENGTH = 300  # a dead letter's topic is kept up to this many characters


class TelemetrySample(models.Model):
    """One normalized sample: a telemetry message (or one sample of a batch) or a heartbeat's
    vitals. ``idx`` is the sample's position in a batch message (0 for a single sample)."""

    pk = models.CompositePrimaryKey("device_id", "ts", "kind", "boot", "seq", "idx")
    device = models.ForeignKey("devices.Device", on_delete=models.DO_NOTHING, related_name="+")
    ts = models.DateTimeField()
    kind = models.SmallIntegerField(choices=SampleKind.choices)
    boot = models.BigIntegerField()
    seq = models.BigIntegerField()
    idx = models.SmallIntegerField(default=0)
    received_at = models.DateTimeField()
    metrics = models.JSONField(default=dict)
    # fields no metric of the profile's schema consumed (kept, never dropped)
    extra = models.JSONField(null=True, blank=True)

    objects = ScopedManager()
    scope_resource = "telemetry"
    scope_organization_field = "device__organization"

    class Meta:
        managed = False
        db_table = "telemetry_sample"
        ordering = ["device", "ts"]

    def __str__(self) -> str:
        return f"{self.device_id} {self.ts:%Y-%m-%d %H:%M:%S} {self.boot}/{self.seq}"


class DeviceEvent(models.Model):
    """An event a device reported on ``devices/<id>/events`` (its logs, errors, custom events)."""

    pk = models.CompositePrimaryKey("device_id", "ts", "boot", "seq")
    device = models.ForeignKey("devices.Device", on_delete=models.DO_NOTHING, related_name="+")
    ts = models.DateTimeField()
    boot = models.BigIntegerField()
    seq = models.BigIntegerField()
    received_at = models.DateTimeField()
    type = models.CharField(max_length=200)
    severity = models.CharField(max_length=16)
    message = models.TextField(blank=True)
    data = models.JSONField(null=True, blank=True)

    objects = ScopedManager()
    scope_resource = "telemetry"
    scope_organization_field = "device__organization"

    class Meta:
        managed = False
        db_table = "telemetry_device_event"
        ordering = ["device", "-ts"]

    def __str__(self) -> str:
        return f"{self.device_id} {self.type} {self.ts:%Y-%m-%d %H:%M:%S}"


class LatestValues(models.Model):
    """The newest value of every metric and vital of one device, for instant reads.

    Written by one set-based upsert per ingest batch. ``metrics`` merges newer samples over older
    ones key by key, so a late sample only fills in metrics the newer ones did not carry."""

    device = models.OneToOneField(
        "devices.Device", on_delete=models.CASCADE, primary_key=True, related_name="latest"
    )
    metrics = models.JSONField(default=dict)
    metrics_at = models.DateTimeField(null=True, blank=True)
    vitals = models.JSONField(default=dict)
    vitals_at = models.DateTimeField(null=True, blank=True)
    uptime_s = models.BigIntegerField(null=True, blank=True)
    boot = models.BigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    objects = ScopedManager()
    scope_resource = "telemetry"
    scope_organization_field = "device__organization"

    class Meta:
        db_table = "telemetry_latest"
        verbose_name_plural = "latest values"

    def __str__(self) -> str:
        return f"latest {self.device_id}"


class DeadLetter(models.Model):
    """A message the pipeline could not store, kept with its reason and raw bytes: counted,
    inspectable, replayable (after a profile fix) or discarded, never dropped silently.

    ``digest`` identifies the message (``message_digest`` of its topic and bytes), so a message
    redelivered after a crash between commit and acknowledgement makes no second dead letter.
    It is NULL on rows the pipeline did not write (by hand, or duplicates older than it)."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    received_at = models.DateTimeField(default=timezone.now)
    # the device's organization when the device is known (unknown devices: staff only)
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    device = models.ForeignKey(
        "devices.Device", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.MQTT)
    topic = models.CharField(max_length=TOPIC_LENGTH)
    reason = models.CharField(max_length=32, choices=DeadLetterReason.choices)
    detail = models.TextField(blank=True)
    payload = models.BinaryField()
    digest = models.BinaryField(max_length=32, null=True, blank=True, editable=False)
    status = models.CharField(
        max_length=16, choices=DeadLetterStatus.choices, default=DeadLetterStatus.NEW
    )
    replay_count = models.PositiveIntegerField(default=0)
    handled_at = models.DateTimeField(null=True, blank=True)
    handled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    objects = ScopedManager()
    scope_resource = "telemetry"

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["digest"], name="telemetry_dl_digest")]
        indexes = [
            models.Index(fields=["organization", "-received_at"], name="telemetry_dl_org"),
            models.Index(
                fields=["reason", "-received_at"],
                name="telemetry_dl_new",
                condition=models.Q(status="new"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reason} {self.topic}"

    @staticmethod
    def message_digest(topic: str, payload: bytes) -> bytes:
        """SHA-256 of the stored topic, a NUL (never in a topic) and the raw payload. Devices
        number every message (``boot``, ``seq``), so the same bytes on the same topic are the
        same message sent again. Migration 0003 computes the same digest in SQL."""
        return hashlib.sha256(topic[:TOPIC_LENGTH].encode() + b"\0" + payload).digest()
