from __future__ import annotations

from django.db import models


class DeviceState(models.TextChoices):
    ESCROW = "escrow", "Escrow"
    DISCOVERED = "discovered", "Discovered"
    ACTIVE = "active", "Active"
    MAINTENANCE = "maintenance", "Maintenance"
    SUSPENDED = "suspended", "Suspended"
    DECOMMISSIONED = "decommissioned", "Decommissioned"
    REPLACED = "replaced", "Replaced"


class Connectivity(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"


class GroupKind(models.TextChoices):
    STATIC = "static", "Static"
    DYNAMIC = "dynamic", "Dynamic"


class TransferStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"
