"""Configuration management: layers, effective versions and per-device desired/reported state.

A device's effective configuration is, from weakest to strongest: the defaults of its profile
version's ``configuration_schema``, its provisioning template's configuration, the
``OrganizationConfiguration`` of every organization on its path (deeper wins), the
``GroupConfiguration`` of every group it belongs to (ascending ``priority``: the highest wins)
and its ``DeviceConfiguration`` overrides. ``apps.configuration.layering`` computes it.
Layers are written only by executing a change request of kind ``configuration``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.core.models import OrganizationOwned
from apps.core.scoping import ScopedManager

from .choices import ReportedStatus, SyncStatus

__all__ = [
    "ConfigurationVersion",
    "DeviceConfiguration",
    "DeviceConfigurationState",
    "GroupConfiguration",
    "OrganizationConfiguration",
]


class OrganizationConfiguration(OrganizationOwned):
    """The organization's layer: values for every device below it, and its variables."""

    values = models.JSONField(default=dict, blank=True)
    variables = models.JSONField(default=dict, blank=True)

    scope_resource = "configuration"

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization"], name="configuration_org_once")
        ]

    def __str__(self) -> str:
        return f"organization {self.organization_id}"


class GroupConfiguration(OrganizationOwned):
    """A group's layer. Groups apply in ascending ``priority`` (ties by group name): the
    highest priority wins a key that several of a device's groups set."""

    group = models.OneToOneField(
        "devices.DeviceGroup", on_delete=models.CASCADE, related_name="configuration"
    )
    priority = models.IntegerField(default=0)
    values = models.JSONField(default=dict, blank=True)
    variables = models.JSONField(default=dict, blank=True)

    scope_resource = "configuration"

    def __str__(self) -> str:
        return f"group {self.group_id}"


class DeviceConfiguration(OrganizationOwned):
    """A device's overrides and variables. ``pinned_version``: a rollback pinned the device
    to that version's document (``pinned_document``) until its next device-layer change."""

    device = models.OneToOneField(
        "devices.Device", on_delete=models.CASCADE, related_name="configuration"
    )
    overrides = models.JSONField(default=dict, blank=True)
    variables = models.JSONField(default=dict, blank=True)
    pinned_version = models.PositiveIntegerField(null=True, blank=True)
    pinned_document = models.JSONField(null=True, blank=True)

    scope_resource = "configuration"

    def __str__(self) -> str:
        return f"device {self.device_id}"


class ConfigurationVersion(OrganizationOwned):
    """One distinct effective configuration of a device (history): versions increase per
    device; ``checksum`` is the SHA-256 of the document's canonical JSON."""

    device = models.ForeignKey(
        "devices.Device", on_delete=models.CASCADE, related_name="configuration_versions"
    )
    version = models.PositiveIntegerField()
    checksum = models.CharField(max_length=64)
    document = models.JSONField(default=dict)
    change_request = models.ForeignKey(
        "changes.ChangeRequest",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_by_label = models.CharField(max_length=200, blank=True)

    scope_resource = "configuration"

    class Meta:
        ordering = ["device", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["device", "version"], name="configuration_version_once")
        ]
        indexes = [models.Index(fields=["change_request"], name="configuration_version_request")]

    def __str__(self) -> str:
        return f"{self.device_id} v{self.version}"


class DeviceConfigurationState(models.Model):
    """Desired against reported, per device. ``out_of_sync_since``: when the device stopped
    running its desired configuration (None while in sync); the drift sweep turns ``pending``
    into ``drifted`` once that is older than ``CONFIGURATION_DRIFT_TOLERANCE``."""

    device = models.OneToOneField(
        "devices.Device", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="+"
    )
    desired_version = models.PositiveIntegerField(default=0)
    desired_checksum = models.CharField(max_length=64, blank=True)
    desired_at = models.DateTimeField(default=timezone.now)
    reported_version = models.PositiveIntegerField(null=True, blank=True)
    reported_checksum = models.CharField(max_length=64, blank=True)
    reported_status = models.CharField(max_length=8, choices=ReportedStatus.choices, blank=True)
    reported_error = models.TextField(blank=True)
    reported_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=SyncStatus.choices, default=SyncStatus.PENDING)
    out_of_sync_since = models.DateTimeField(null=True, blank=True)

    objects = ScopedManager()
    scope_resource = "configuration"

    class Meta:
        indexes = [
            models.Index(fields=["organization", "status"], name="configuration_state_status"),
            models.Index(
                fields=["out_of_sync_since"],
                name="configuration_state_pending",
                condition=models.Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.device_id}: {self.status}"
