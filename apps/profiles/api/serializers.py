"""Input and output shapes of the profiles API. No business rules: services hold them."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.api.serializers import IdField
from apps.profiles.choices import ConnectionType
from apps.profiles.models import DeviceProfile, ProfileVersion
from apps.profiles.selectors import latest_version

# --- output ------------------------------------------------------------------------------------


class ProfileVersionSerializer(serializers.ModelSerializer[ProfileVersion]):
    profile = serializers.UUIDField(source="profile_id", read_only=True)
    created_by = serializers.UUIDField(source="created_by_id", read_only=True, allow_null=True)
    attributes_schema = serializers.JSONField(read_only=True)
    telemetry_schema = serializers.JSONField(read_only=True)
    command_catalog = serializers.JSONField(read_only=True)
    configuration_schema = serializers.JSONField(read_only=True)

    class Meta:
        model = ProfileVersion
        fields = [
            "id",
            "profile",
            "number",
            "hardware_revisions",
            "connection_type",
            "capabilities",
            "attributes_schema",
            "telemetry_schema",
            "heartbeat_interval_seconds",
            "heartbeat_missed_beats",
            "command_catalog",
            "configuration_schema",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ProfileSerializer(serializers.ModelSerializer[DeviceProfile]):
    organization = serializers.UUIDField(source="organization_id", read_only=True)
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = DeviceProfile
        fields = [
            "id",
            "organization",
            "name",
            "slug",
            "description",
            "latest_number",
            "latest_version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(ProfileVersionSerializer)
    def get_latest_version(self, profile: DeviceProfile) -> dict[str, Any]:
        return ProfileVersionSerializer(latest_version(profile)).data  # type: ignore[return-value]


# --- input -------------------------------------------------------------------------------------


def _labels() -> serializers.ListField:
    return serializers.ListField(child=serializers.CharField(max_length=64), required=False)


class VersionFieldsSerializer(serializers.Serializer[Any]):
    """The fields of a profile version; deep checks (JSON Schema, telemetry rules, command
    catalog) happen in the service and come back as field errors."""

    hardware_revisions = _labels()
    connection_type = serializers.ChoiceField(choices=ConnectionType.choices, required=False)
    capabilities = _labels()
    attributes_schema = serializers.JSONField(required=False)
    telemetry_schema = serializers.JSONField(required=False)
    heartbeat_interval_seconds = serializers.IntegerField(required=False)
    heartbeat_missed_beats = serializers.IntegerField(required=False)
    command_catalog = serializers.JSONField(required=False)
    configuration_schema = serializers.JSONField(required=False)


class ProfileCreateSerializer(VersionFieldsSerializer):
    organization = IdField(help_text="The manufacturer organization that owns the profile.")
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)


class ProfileUpdateSerializer(VersionFieldsSerializer):
    name = serializers.CharField(max_length=200, required=False)
    slug = serializers.SlugField(max_length=80, required=False)
    description = serializers.CharField(required=False, allow_blank=True)


class UpgradeDevicesSerializer(serializers.Serializer[Any]):
    devices = serializers.ListField(
        child=serializers.UUIDField(), required=False, max_length=100_000
    )
    filter = serializers.DictField(
        required=False, help_text="A device selection (the fleet filter language)."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("devices" in attrs) == ("filter" in attrs):
            raise serializers.ValidationError("Give either devices or filter, not both.")
        return attrs


class UpgradeResultSerializer(serializers.Serializer[Any]):
    upgraded = serializers.IntegerField()
