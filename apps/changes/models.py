"""Change requests: what will run, on which devices, when; who approved exactly that.

A change request is created (``pending_approval`` or, when its policy asks for no approval,
``approved``), approved by others with ``changerequest.approve`` (each approval binds to the
request's ``content_hash`` at that moment: any edit changes the hash and voids them), then
executed by the platform through its kind (``apps.changes.kinds``: ``command``,
``configuration``; later ``deployment``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.core.models import BaseModel, OrganizationOwned

from .choices import ChangeStatus, CommandThreshold, Decision, ResolveAt

__all__ = ["Approval", "ApprovalPolicy", "ChangeRequest", "ChangeRequestDevice"]

USER = settings.AUTH_USER_MODEL


class ChangeRequest(OrganizationOwned):
    """One change: ``kind`` + ``spec`` (validated by the kind), ``target`` (``{"device": id}``,
    ``{"group": id}`` or ``{"filter": selection}``, see ``apps.devices.selection``), resolved
    when executed or frozen when submitted (``resolve_at``), ``run_at``, ``window``,
    ``expires_at``."""

    kind = models.CharField(max_length=32)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    spec = models.JSONField(default=dict)
    target = models.JSONField(default=dict)
    resolve_at = models.CharField(
        max_length=16, choices=ResolveAt.choices, default=ResolveAt.EXECUTION
    )
    run_at = models.DateTimeField(null=True, blank=True)  # None: as soon as executed
    window = models.JSONField(null=True, blank=True)  # {"days", "start", "end", "timezone"}
    expires_at = models.DateTimeField()
    status = models.CharField(
        max_length=20, choices=ChangeStatus.choices, default=ChangeStatus.PENDING_APPROVAL
    )
    revision = models.PositiveIntegerField(default=1)
    content_hash = models.CharField(max_length=64)
    required_approvals = models.PositiveSmallIntegerField(default=0)
    policy_reason = models.CharField(max_length=300, blank=True)
    device_count = models.PositiveIntegerField(default=0)  # at submission / execution
    created_by = models.ForeignKey(
        USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by_label = models.CharField(max_length=200, blank=True)  # user or API key
    # the API key that created it (its creator user, if known, is ``created_by``)
    created_by_api_key_id = models.UUIDField(null=True, blank=True)
    executed_by = models.ForeignKey(
        USER, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    executed_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "status"], name="changes_request_org_status"),
            models.Index(fields=["status", "run_at"], name="changes_request_due"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.title}"


class ChangeRequestDevice(models.Model):
    """A device a request resolved to when frozen at submission (``resolve_at=approval``)."""

    id = models.BigAutoField(primary_key=True)
    request = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="devices")
    device = models.ForeignKey("devices.Device", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["request", "device"], name="changes_device_once")
        ]

    def __str__(self) -> str:
        return f"{self.request_id}: {self.device_id}"


class Approval(BaseModel):
    """One approver's decision on one revision of a request (bound to its content hash)."""

    request = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="approvals")
    # a person, or the API key that decided (``approver`` is then the key's creator, if known)
    approver = models.ForeignKey(
        USER, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    approver_api_key_id = models.UUIDField(null=True, blank=True)
    approver_label = models.CharField(max_length=200, blank=True)
    decision = models.CharField(max_length=8, choices=Decision.choices)
    revision = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64)
    comment = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["request", "approver", "revision"], name="changes_approval_once"
            ),
            models.UniqueConstraint(
                fields=["request", "approver_api_key_id", "revision"],
                name="changes_key_approval_once",
            ),
        ]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.decision} by {self.approver_label} (revision {self.revision})"


class ApprovalPolicy(OrganizationOwned):
    """Which requests need approval, and how many approvers. The most specific applies: the
    organization's policy for the request's profile, else its own, else the nearest
    ancestor's, else the installation's default (``apps.changes.policies.DEFAULT``)."""

    profile = models.ForeignKey(
        "profiles.DeviceProfile", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    name = models.CharField(max_length=100)
    command_threshold = models.CharField(
        max_length=10, choices=CommandThreshold.choices, default=CommandThreshold.CRITICAL
    )
    device_threshold = models.PositiveIntegerField(null=True, blank=True)
    configuration_always = models.BooleanField(default=False)
    configuration_critical_keys = models.JSONField(default=list, blank=True)
    approvals_required = models.PositiveSmallIntegerField(default=1)

    scope_resource = "changerequest"  # managed with changerequest.change

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "profile"],
                name="changes_policy_once",
                nulls_distinct=False,
            )
        ]
        verbose_name_plural = "approval policies"

    def __str__(self) -> str:
        return self.name
