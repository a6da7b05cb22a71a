"""The fleet registry: devices, groups, transfers."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.utils import timezone
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from apps.core.models import BaseModel, OrganizationOwned
from apps.core.scoping import ScopedManager

from .choices import Connectivity, DeviceState, GroupKind, TransferStatus

__all__ = [
    "Device",
    "DeviceGroup",
    "DeviceGroupGroupObjectPermission",
    "DeviceGroupUserObjectPermission",
    "GroupMembership",
    "Transfer",
]


class Device(OrganizationOwned):
    """One physical device. Its UUID is its identity everywhere (certificate CN, MQTT client id,
    topics). The serial number is unique within its manufacturer."""

    manufacturer = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="+"
    )
    profile_version = models.ForeignKey(
        "profiles.ProfileVersion", on_delete=models.PROTECT, related_name="devices"
    )
    serial = models.CharField(max_length=128)
    name = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=16, choices=DeviceState.choices, default=DeviceState.ESCROW)
    state_changed_at = models.DateTimeField(default=timezone.now)
    tags = ArrayField(models.CharField(max_length=64), default=list, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    latitude = models.FloatField(null=True, blank=True)
    longitude = models.FloatField(null=True, blank=True)
    site = models.ForeignKey(
        "accounts.Organization",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    inventory = models.JSONField(default=dict, blank=True)
    firmware_version = models.CharField(max_length=64, blank=True)
    connectivity = models.CharField(
        max_length=8, choices=Connectivity.choices, default=Connectivity.UNKNOWN
    )
    last_seen_at = models.DateTimeField(null=True, blank=True)
    claim_code_hash = models.CharField(max_length=64, blank=True, editable=False)
    # what provisioning applied on activation (templates, configuration, heartbeat, routes...)
    provisioning = models.JSONField(default=dict, blank=True)
    replaced_by = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="replaces"
    )

    scope_resource = "device"

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["manufacturer", "serial"], name="devices_serial_per_manufacturer"
            )
        ]
        indexes = [
            models.Index(fields=["organization", "-id"], name="devices_org_keyset"),
            models.Index(fields=["organization", "state", "-id"], name="devices_org_state"),
            models.Index(fields=["profile_version"], name="devices_profile_version"),
            models.Index(fields=["organization", "firmware_version"], name="devices_firmware"),
            models.Index(
                fields=["serial"], name="devices_serial_prefix", opclasses=["varchar_pattern_ops"]
            ),
            GinIndex(fields=["tags"], name="devices_tags"),
            GinIndex(
                fields=["attributes"], name="devices_attributes", opclasses=["jsonb_path_ops"]
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.serial


class DeviceGroup(OrganizationOwned):
    """A static list of devices, or a dynamic saved filter that always reflects the fleet."""

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=8, choices=GroupKind.choices, default=GroupKind.STATIC)
    filter = models.JSONField(default=dict, blank=True)
    devices = models.ManyToManyField(Device, through="GroupMembership", related_name="groups")

    scope_resource = "devicegroup"
    scope_user_grant_model = "devices.DeviceGroupUserObjectPermission"
    scope_group_grant_model = "devices.DeviceGroupGroupObjectPermission"
    scope_grant_sort_fields = {"name": "object_name"}  # a page by name reads the grants' index

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="devices_group_name")
        ]

    def __str__(self) -> str:
        return self.name


class GroupMembership(models.Model):
    """A device in a static group."""

    id = models.BigAutoField(primary_key=True)
    group = models.ForeignKey(DeviceGroup, on_delete=models.CASCADE, related_name="memberships")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="memberships")
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["group", "device"], name="devices_member_once")
        ]
        indexes = [models.Index(fields=["device"])]

    def __str__(self) -> str:
        return f"{self.device_id} in {self.group_id}"


class DeviceGroupUserObjectPermission(UserObjectPermissionBase):
    """A device group shared with one user (django-guardian, direct foreign key)."""

    content_object = models.ForeignKey(DeviceGroup, on_delete=models.CASCADE)
    # The group's name, set by a database trigger whatever the writer sends (migration 0002):
    # a page of groups by name takes its first grants from the index, not every shared group.
    object_name = models.CharField(max_length=200, default="", editable=False)

    class Meta(UserObjectPermissionBase.Meta):
        indexes = [
            models.Index(
                fields=["user", "permission", "object_name", "content_object"],
                name="devices_group_user_listing",
            )
        ]


class DeviceGroupGroupObjectPermission(GroupObjectPermissionBase):
    """A device group shared with an organization (through the organization's auth group)."""

    content_object = models.ForeignKey(DeviceGroup, on_delete=models.CASCADE)
    object_name = models.CharField(max_length=200, default="", editable=False)  # as above

    class Meta(GroupObjectPermissionBase.Meta):
        indexes = [
            models.Index(
                fields=["group", "permission", "object_name", "content_object"],
                name="devices_group_org_listing",
            )
        ]


class Transfer(BaseModel):
    """Moving an escrow device from its manufacturer to a customer organization."""

    device = models.ForeignKey(Device, on_delete=models.PROTECT, related_name="transfers")
    from_organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="+"
    )
    to_organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="+"
    )
    status = models.CharField(
        max_length=10, choices=TransferStatus.choices, default=TransferStatus.PENDING
    )
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    objects = ScopedManager()
    scope_resource = "device"
    scope_organization_field = "from_organization"  # the sender's view; the inbox is a selector

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["device"],
                condition=models.Q(status="pending"),
                name="devices_one_pending_transfer",
            )
        ]
        indexes = [models.Index(fields=["to_organization", "status"])]

    def __str__(self) -> str:
        return f"{self.device_id}: {self.from_organization_id} -> {self.to_organization_id}"


# Credentials and enrollment live in their own modules (kept apart from the registry).
from .models_enrollment import ClaimToken, EnrollmentPolicy  # noqa: E402
from .models_pki import (  # noqa: E402
    BrokerState,
    CertificateAuthority,
    DeviceCertificate,
    DeviceToken,
)

__all__ += [
    "BrokerState",
    "CertificateAuthority",
    "ClaimToken",
    "DeviceCertificate",
    "DeviceToken",
    "EnrollmentPolicy",
]
from .models_downlink import Downlink, DownlinkState  # noqa: E402
from .models_uplink import UplinkKind, UplinkMessage  # noqa: E402

__all__ += ["Downlink", "DownlinkState", "UplinkKind", "UplinkMessage"]
from .models_refusals import BrokerRefusal, RefusalReason  # noqa: E402

__all__ += ["BrokerRefusal", "RefusalReason"]
