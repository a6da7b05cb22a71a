"""Choices of change requests."""

from __future__ import annotations

from django.db import models


class ChangeStatus(models.TextChoices):
    PENDING_APPROVAL = "pending_approval", "Pending approval"
    APPROVED = "approved", "Approved"  # or needs no approval: may be executed
    REJECTED = "rejected", "Rejected"
    SCHEDULED = "scheduled", "Scheduled"  # executed, waits for run_at / its window
    EXECUTING = "executing", "Executing"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    EXPIRED = "expired", "Expired"


class ResolveAt(models.TextChoices):
    EXECUTION = "execution", "When executed (dynamic)"
    APPROVAL = "approval", "Frozen when submitted for approval"


class Decision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class CommandThreshold(models.TextChoices):
    """From which command criticality on a policy asks for approval."""

    NORMAL = "normal", "Every command"
    CRITICAL = "critical", "Critical commands"
    NEVER = "never", "No command"
