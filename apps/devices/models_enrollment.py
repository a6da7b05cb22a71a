"""Zero-touch provisioning: enrollment policies and their claim tokens."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.core.models import BaseModel, OrganizationOwned
from apps.core.scoping import ScopedManager

from .choices import EnrollmentMethod, EscrowAction, FirstContact

__all__ = ["ClaimToken", "EnrollmentPolicy"]


class EnrollmentPolicy(OrganizationOwned):
    """How a device of ``profile`` (or any profile, when empty) proves itself on first contact
    and what happens then: the proof (a claim token, or a factory certificate from one of the
    organization's registered CAs), auto-activation or quarantine as ``discovered``, the
    organization unknown devices land in (inside the policy's subtree), and what becomes of a
    pre-registered ``escrow`` device."""

    name = models.CharField(max_length=200)
    profile = models.ForeignKey(
        "profiles.DeviceProfile", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    method = models.CharField(max_length=24, choices=EnrollmentMethod.choices)
    first_contact = models.CharField(
        max_length=16, choices=FirstContact.choices, default=FirstContact.ACTIVATE
    )
    escrow_action = models.CharField(
        max_length=16, choices=EscrowAction.choices, default=EscrowAction.ACTIVATE
    )
    target_organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="+"
    )
    authorities = models.ManyToManyField(
        "devices.CertificateAuthority", blank=True, related_name="enrollment_policies"
    )
    allow_token_credentials = models.BooleanField(default=False)
    enabled = models.BooleanField(default=True)

    scope_resource = "enrollmentpolicy"

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="devices_policy_name")
        ]

    def __str__(self) -> str:
        return self.name


class ClaimToken(BaseModel):
    """A batch secret printed into a production run: ``fo_claim_<prefix>_<secret>``, shown once,
    stored as prefix + SHA-256. Expires, and counts its uses against ``max_uses``."""

    policy = models.ForeignKey(EnrollmentPolicy, on_delete=models.CASCADE, related_name="tokens")
    prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64, editable=False)
    label = models.CharField(max_length=100, blank=True)
    expires_at = models.DateTimeField()
    max_uses = models.PositiveIntegerField()
    uses = models.PositiveIntegerField(default=0)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = ScopedManager()
    scope_resource = "enrollmentpolicy"
    scope_organization_field = "policy__organization"

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(uses__lte=models.F("max_uses")), name="devices_claim_uses"
            )
        ]

    def __str__(self) -> str:
        return f"fo_claim_{self.prefix}_… ({self.label})"
