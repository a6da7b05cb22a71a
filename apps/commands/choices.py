"""Choices of commands."""

from __future__ import annotations

from django.db import models


class CommandStatus(models.TextChoices):
    QUEUED = "queued", "Queued"  # created, its message waits in the downlink outbox
    SENT = "sent", "Sent"  # the broker acknowledged the message (or the device fetched it)
    RECEIVED = "received", "Received"  # the device said it has it
    IN_PROGRESS = "in_progress", "In progress"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    TIMED_OUT = "timed_out", "Timed out"  # received, but no final result before timeout_at
    EXPIRED = "expired", "Expired"  # never received before expires_at
    CANCELLED = "cancelled", "Cancelled"


FINAL = frozenset(
    {
        CommandStatus.SUCCEEDED,
        CommandStatus.FAILED,
        CommandStatus.TIMED_OUT,
        CommandStatus.EXPIRED,
        CommandStatus.CANCELLED,
    }
)
UNANSWERED = (CommandStatus.QUEUED, CommandStatus.SENT)  # retried until expiry
RUNNING = (CommandStatus.RECEIVED, CommandStatus.IN_PROGRESS)  # timed out after timeout_at

# Transitions only move forward: a report whose rank is not above the current one is ignored.
RANK = {
    CommandStatus.QUEUED: 0,
    CommandStatus.SENT: 1,
    CommandStatus.RECEIVED: 2,
    CommandStatus.IN_PROGRESS: 3,
    **dict.fromkeys(FINAL, 4),
}

# What a device may report (``commands/<id>/result``, ``POST /device/v1/commands/<id>/result``).
REPORTED = (
    CommandStatus.RECEIVED,
    CommandStatus.IN_PROGRESS,
    CommandStatus.SUCCEEDED,
    CommandStatus.FAILED,
)
