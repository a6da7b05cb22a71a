"""Serializers of the configuration API (read-only)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ..choices import SyncStatus
from ..models import (
    ConfigurationVersion,
    DeviceConfiguration,
    DeviceConfigurationState,
    GroupConfiguration,
    OrganizationConfiguration,
)

STATE_FIELDS = [
    "device",
    "device_serial",
    "organization",
    "status",
    "desired_version",
    "desired_checksum",
    "desired_at",
    "reported_version",
    "reported_checksum",
    "reported_status",
    "reported_error",
    "reported_at",
    "out_of_sync_since",
]


class StateSerializer(serializers.ModelSerializer[DeviceConfigurationState]):
    device = serializers.UUIDField(source="device_id", read_only=True)
    device_serial = serializers.CharField(source="device.serial", read_only=True)
    organization = serializers.UUIDField(source="organization_id", read_only=True)
    # plain text in the schema: a "status" enum here would collide with other apps' names
    status = serializers.CharField(
        read_only=True, help_text=f"One of: {', '.join(SyncStatus.values)}."
    )
    reported_status = serializers.CharField(
        read_only=True, help_text="applied, error, or empty before the first report."
    )

    class Meta:
        model = DeviceConfigurationState
        fields = STATE_FIELDS
        read_only_fields = fields


class StateDetailSerializer(StateSerializer):
    configuration = serializers.SerializerMethodField()

    class Meta(StateSerializer.Meta):
        fields = [*STATE_FIELDS, "configuration"]
        read_only_fields = fields

    def get_configuration(self, state: DeviceConfigurationState) -> dict[str, Any]:
        version = ConfigurationVersion.objects.filter(
            device_id=state.device_id, version=state.desired_version
        ).first()
        return version.document if version is not None else {}


class SummarySerializer(serializers.Serializer[Any]):
    counts = serializers.DictField(
        child=serializers.IntegerField(),
        help_text=f"Devices per status ({', '.join(SyncStatus.values)}) and total.",
    )


class EffectiveSerializer(serializers.Serializer[Any]):
    device = serializers.UUIDField(source="device_id")
    serial = serializers.CharField()
    configuration = serializers.JSONField(source="document")
    checksum = serializers.CharField()
    errors = serializers.ListField(child=serializers.CharField())  # type: ignore[assignment]
    pinned_version = serializers.IntegerField(allow_null=True)


class VersionSerializer(serializers.ModelSerializer[ConfigurationVersion]):
    device = serializers.UUIDField(source="device_id", read_only=True)
    change_request = serializers.UUIDField(source="change_request_id", read_only=True)

    class Meta:
        model = ConfigurationVersion
        fields = [
            "device",
            "version",
            "checksum",
            "document",
            "change_request",
            "created_by_label",
            "created_at",
        ]
        read_only_fields = fields


class DiffEntrySerializer(serializers.Serializer[Any]):
    op = serializers.ChoiceField(choices=["add", "remove", "replace"])
    path = serializers.CharField()
    to = serializers.JSONField(allow_null=True)

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["from"] = serializers.JSONField(allow_null=True)  # a keyword in Python
        return fields


class VersionDiffSerializer(serializers.Serializer[Any]):
    version = VersionSerializer()
    against = serializers.IntegerField(allow_null=True)
    diff = DiffEntrySerializer(many=True)


class OrganizationLayerSerializer(serializers.ModelSerializer[OrganizationConfiguration]):
    organization = serializers.UUIDField(source="organization_id", read_only=True)

    class Meta:
        model = OrganizationConfiguration
        fields = ["id", "organization", "values", "variables", "updated_at"]
        read_only_fields = fields


class GroupLayerSerializer(serializers.ModelSerializer[GroupConfiguration]):
    organization = serializers.UUIDField(source="organization_id", read_only=True)
    group = serializers.UUIDField(source="group_id", read_only=True)
    group_name = serializers.CharField(source="group.name", read_only=True)

    class Meta:
        model = GroupConfiguration
        fields = [
            "id",
            "organization",
            "group",
            "group_name",
            "priority",
            "values",
            "variables",
            "updated_at",
        ]
        read_only_fields = fields


class DeviceLayerSerializer(serializers.ModelSerializer[DeviceConfiguration]):
    organization = serializers.UUIDField(source="organization_id", read_only=True)
    device = serializers.UUIDField(source="device_id", read_only=True)
    device_serial = serializers.CharField(source="device.serial", read_only=True)

    class Meta:
        model = DeviceConfiguration
        fields = [
            "id",
            "organization",
            "device",
            "device_serial",
            "overrides",
            "variables",
            "pinned_version",
            "updated_at",
        ]
        read_only_fields = fields
