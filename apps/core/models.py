"""Base models, the audit log and the domain events outbox."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from .ids import uuid7
from .scoping import ScopedManager

__all__ = [
    "AuditLog",
    "BaseModel",
    "DeliveryStatus",
    "Event",
    "EventDelivery",
    "Job",
    "JobItem",
    "JobStatus",
    "OrganizationOwned",
]


class BaseModel(models.Model):
    """UUID (version 7) primary key plus creation and update times."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class OrganizationOwned(BaseModel):
    """A tenant-owned row. Scoped by ``objects.for_actor`` through its organization."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="+"
    )

    objects = ScopedManager()

    class Meta:
        abstract = True

    def clean_same_organization(self, **related: Any) -> None:
        """Reject foreign keys into another organization's objects (call from ``clean``)."""
        from django.core.exceptions import ValidationError

        errors = {
            name: "Must belong to the same organization."
            for name, obj in related.items()
            if obj is not None and obj.organization_id != self.organization_id
        }
        if errors:
            raise ValidationError(errors)


class AuditLog(models.Model):
    """Append-only record of one write. UPDATE and DELETE are refused by a database trigger."""

    class ActorKind(models.TextChoices):
        USER = "user", "User"
        API_KEY = "api_key", "API key"
        DEVICE = "device", "Device"
        SYSTEM = "system", "System"

    class Source(models.TextChoices):
        API = "api", "API"
        PORTAL = "portal", "Portal"
        ADMIN = "admin", "Admin"
        WORKER = "worker", "Worker"
        DEVICE = "device", "Device"
        SYSTEM = "system", "System"

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_kind = models.CharField(max_length=16, choices=ActorKind.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_constraint=False,
    )
    actor_api_key_id = models.UUIDField(null=True, blank=True)
    actor_device_id = models.UUIDField(null=True, blank=True)
    actor_label = models.CharField(max_length=255)
    source = models.CharField(max_length=16, choices=Source.choices)
    action = models.CharField(max_length=100)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=255)
    changes = models.JSONField(default=dict, blank=True)
    request_id = models.CharField(max_length=64, blank=True)

    objects = ScopedManager()
    scope_resource = "auditlog"

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            models.Index(fields=["object_type", "object_id"]),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor_label} {self.action}"


class Event(models.Model):
    """A domain event, written in the same transaction as the change it describes (outbox)."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    organization = models.ForeignKey(
        "accounts.Organization",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    type = models.CharField(max_length=100)
    subject_type = models.CharField(max_length=100, blank=True)
    subject_id = models.CharField(max_length=64, blank=True)
    payload = models.JSONField(default=dict)

    objects = ScopedManager()
    scope_resource = "event"

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            models.Index(fields=["subject_type", "subject_id", "created_at"]),
            models.Index(fields=["type", "-created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    DEAD = "dead", "Dead letter"


class EventDelivery(models.Model):
    """One consumer's delivery of one event: the unit of at-least-once delivery."""

    id = models.BigAutoField(primary_key=True)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    consumer = models.CharField(max_length=100)
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        verbose_name_plural = "event deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "consumer"], name="core_delivery_once")
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="core_delivery_due",
                condition=models.Q(status="pending"),
            ),
            models.Index(fields=["status", "consumer"]),
        ]

    def __str__(self) -> str:
        return f"{self.consumer}:{self.event_id} ({self.status})"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Finished with errors"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Job(OrganizationOwned):
    """A long operation (bulk import, bulk transition...): status, progress and log lines."""

    kind = models.CharField(max_length=50)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    input_file = models.FileField(upload_to="jobs/input/%Y/%m/", blank=True)
    output_file = models.FileField(upload_to="jobs/output/%Y/%m/", blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    actor_label = models.CharField(max_length=255, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    scope_resource = "job"

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organization", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"

    @property
    def percent(self) -> int:
        return int(100 * self.processed / self.total) if self.total else 0


class JobItem(models.Model):
    """One item's outcome in a job (a device of a bulk transition, a row of an import)."""

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="items")
    key = models.CharField(max_length=100)
    ok = models.BooleanField()
    message = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["job", "ok", "id"])]

    def __str__(self) -> str:
        return f"{self.key}: {'ok' if self.ok else self.message}"


class JobLine(models.Model):
    """A log line of a job."""

    id = models.BigAutoField(primary_key=True)
    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="lines")
    created_at = models.DateTimeField(default=timezone.now)
    level = models.CharField(max_length=10, default="info")
    message = models.TextField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.message
