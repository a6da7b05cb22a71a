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


class AuthorityKind(models.TextChoices):
    ROOT = "root", "Installation root"
    INTERMEDIATE = "intermediate", "Organization intermediate"
    EXTERNAL = "external", "Registered (bring your own)"


class CertificateKind(models.TextChoices):
    OPERATIONAL = "operational", "Operational (issued here)"
    FACTORY = "factory", "Factory (from a registered CA)"


class CredentialStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUPERSEDED = "superseded", "Superseded"
    REVOKED = "revoked", "Revoked"


class EnrollmentMethod(models.TextChoices):
    CLAIM_TOKEN = "claim_token", "Claim token"
    FACTORY_CERTIFICATE = "factory_certificate", "Factory certificate"


class FirstContact(models.TextChoices):
    ACTIVATE = "activate", "Activate automatically"
    QUARANTINE = "quarantine", "Quarantine as discovered until approved"


class EscrowAction(models.TextChoices):
    ACTIVATE = "activate", "Activate the pre-registered device"
    KEEP_ESCROW = "keep_escrow", "Keep it in escrow until transferred"
