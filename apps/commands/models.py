"""Remote commands: one ``Command`` per change request and device.

The command's id is the ``command_id`` on the wire (``devices/<id>/commands/<command_id>``):
the device executes each id once, however often it is delivered.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from apps.core.models import OrganizationOwned

from .choices import CommandStatus

__all__ = ["Command"]


class Command(OrganizationOwned):
    """One command for one device, from the change request that asked for it. Statuses move
    forward only (``choices.RANK``); ``next_attempt_at`` drives the retry sweeper until the
    device says ``received`` or ``expires_at`` passes."""

    request = models.ForeignKey(
        "changes.ChangeRequest", on_delete=models.CASCADE, related_name="commands"
    )
    device = models.ForeignKey(
        "devices.Device", on_delete=models.CASCADE, related_name="commands", db_index=False
    )
    name = models.CharField(max_length=100)
    arguments = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=12, choices=CommandStatus.choices, default=CommandStatus.QUEUED
    )
    attempts = models.PositiveIntegerField(default=1)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    timeout_seconds = models.PositiveIntegerField(default=300)
    issued_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    timeout_at = models.DateTimeField(null=True, blank=True)  # received_at + timeout_seconds
    output = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    late_result = models.JSONField(null=True, blank=True)  # a report after a final status

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["request", "status"], name="commands_request_status"),
            models.Index(fields=["device", "-created_at"], name="commands_device_recent"),
            models.Index(  # the retry and expiry sweeper
                fields=["next_attempt_at"],
                condition=models.Q(status__in=["queued", "sent"]),
                name="commands_unanswered_due",
            ),
            models.Index(  # the timeout sweeper
                fields=["timeout_at"],
                condition=models.Q(status__in=["received", "in_progress"]),
                name="commands_running_due",
            ),
            models.Index(fields=["organization", "-created_at"], name="commands_org_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.name} -> {self.device_id} ({self.status})"
