"""Choices of configuration management."""

from __future__ import annotations

from django.db import models


class SyncStatus(models.TextChoices):
    """Where a device's reported configuration stands against its desired one."""

    PENDING = "pending", "Pending"  # a newer desired version than the device reported
    IN_SYNC = "in_sync", "In sync"  # reported applied with the desired checksum
    DRIFTED = "drifted", "Drifted"  # pending for longer than the tolerance
    ERROR = "error", "Error"  # the device reported it could not apply the desired version


class ReportedStatus(models.TextChoices):
    APPLIED = "applied", "Applied"
    ERROR = "error", "Error"


class Layer(models.TextChoices):
    ORGANIZATION = "organization", "Organization"
    GROUP = "group", "Group"
    DEVICE = "device", "Device"
