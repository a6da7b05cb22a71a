"""The device catalog: profiles and their immutable-once-used versions."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models

from apps.core.models import BaseModel, OrganizationOwned
from apps.core.scoping import ScopedManager

from .choices import ConnectionType

__all__ = ["DeviceProfile", "ProfileVersion", "ProvisioningTemplate"]


def default_object_schema() -> dict[str, object]:
    return {"type": "object"}


def default_telemetry_schema() -> dict[str, object]:
    return {"metrics": []}


class DeviceProfile(OrganizationOwned):
    """A kind of device made by a manufacturer organization.

    Shared down the tree: customers below the manufacturer may use it (read-only).
    """

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80)
    description = models.TextField(blank=True)
    latest_number = models.PositiveIntegerField(default=1)

    scope_resource = "profile"
    scope_shared_down = True

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="profiles_slug_per_org")
        ]

    def __str__(self) -> str:
        return self.name


class ProfileVersion(BaseModel):
    """One version of a profile. A version that devices use is never edited: a change makes a
    new version, and moving devices to it is an explicit, audited action."""

    profile = models.ForeignKey(DeviceProfile, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    hardware_revisions = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    connection_type = models.CharField(
        max_length=8, choices=ConnectionType.choices, default=ConnectionType.MQTT
    )
    capabilities = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    attributes_schema = models.JSONField(default=default_object_schema)
    telemetry_schema = models.JSONField(default=default_telemetry_schema)
    heartbeat_interval_seconds = models.PositiveIntegerField(default=60)
    heartbeat_missed_beats = models.PositiveSmallIntegerField(default=3)
    command_catalog = models.JSONField(default=list, blank=True)
    configuration_schema = models.JSONField(default=default_object_schema)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    objects = ScopedManager()
    scope_resource = "profile"
    scope_organization_field = "profile__organization"
    scope_shared_down = True

    class Meta:
        ordering = ["profile", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["profile", "number"], name="profiles_version_once")
        ]

    def __str__(self) -> str:
        return f"{self.profile.name} v{self.number}"


class ProvisioningTemplate(OrganizationOwned):
    """What a device gets when it is activated: initial configuration, a heartbeat policy,
    data-routing labels and a software baseline.

    Templates stack from the top of the tree down: a template with a profile, owned by the
    profile's manufacturer, is the profile's default; templates of the organizations on the path
    down to the device's organization override it (deeper wins), and among one organization's
    templates the one naming the device's profile overrides the organization-wide one. Empty
    values do not override (``devices.provisioning`` merges them)."""

    name = models.CharField(max_length=200)
    profile = models.ForeignKey(
        DeviceProfile, on_delete=models.PROTECT, null=True, blank=True, related_name="templates"
    )
    configuration = models.JSONField(default=dict, blank=True)
    heartbeat_interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    heartbeat_missed_beats = models.PositiveSmallIntegerField(null=True, blank=True)
    routing_labels = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    software = models.JSONField(default=dict, blank=True)  # {"firmware": "1.4.2", "app": "..."}
    enabled = models.BooleanField(default=True)

    scope_resource = "provisioningtemplate"

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "profile"],
                condition=models.Q(enabled=True),
                name="profiles_one_template_per_org_profile",
                nulls_distinct=False,
            )
        ]

    def __str__(self) -> str:
        return self.name
