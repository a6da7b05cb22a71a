"""Serializers of the change-request API."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.changes.choices import ChangeStatus, ResolveAt
from apps.changes.kinds import names
from apps.changes.models import Approval, ApprovalPolicy, ChangeRequest


@extend_schema_field(
    {"type": "string", "enum": ChangeStatus.values, "description": "A change request's status."}
)
class StatusField(serializers.ChoiceField):
    """A change request's status, its enum inline (``status`` names several enums)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=ChangeStatus.choices, **kwargs)


class ApprovalSerializer(serializers.ModelSerializer[Approval]):
    approver = serializers.UUIDField(source="approver_id", allow_null=True)
    approver_api_key = serializers.UUIDField(source="approver_api_key_id", allow_null=True)
    valid = serializers.SerializerMethodField()

    class Meta:
        model = Approval
        fields = [
            "id",
            "created_at",
            "approver",
            "approver_api_key",
            "approver_label",
            "decision",
            "revision",
            "content_hash",
            "comment",
            "valid",
        ]
        read_only_fields = fields

    def get_valid(self, approval: Approval) -> bool:
        """Whether it binds to the request's current revision and hash."""
        request = approval.request
        return (
            approval.revision == request.revision and approval.content_hash == request.content_hash
        )


class ChangeRequestSerializer(serializers.ModelSerializer[ChangeRequest]):
    created_by = serializers.UUIDField(source="created_by_id", allow_null=True)
    executed_by = serializers.UUIDField(source="executed_by_id", allow_null=True)
    status = StatusField(read_only=True)

    class Meta:
        model = ChangeRequest
        fields = [
            "id",
            "organization",
            "kind",
            "title",
            "description",
            "spec",
            "target",
            "resolve_at",
            "run_at",
            "window",
            "expires_at",
            "status",
            "revision",
            "content_hash",
            "required_approvals",
            "policy_reason",
            "device_count",
            "created_by",
            "created_by_label",
            "executed_by",
            "executed_at",
            "completed_at",
            "cancelled_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ChangeRequestCreateSerializer(serializers.Serializer[Any]):
    organization = serializers.UUIDField()
    kind = serializers.CharField(
        max_length=32, help_text="A registered kind: command, configuration."
    )
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    spec = serializers.JSONField(help_text="What will run; validated by the kind.")
    target = serializers.JSONField(
        help_text='{"device": id}, {"group": id} or {"filter": selection}.'
    )
    resolve_at = serializers.ChoiceField(choices=ResolveAt.choices, default=ResolveAt.EXECUTION)
    run_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    window = serializers.JSONField(
        required=False,
        allow_null=True,
        default=None,
        help_text='{"days": ["mon", ...], "start": "HH:MM", "end": "HH:MM", "timezone": "UTC"}',
    )
    expires_at = serializers.DateTimeField(
        required=False, allow_null=True, default=None, help_text="Default: in 7 days."
    )

    def validate_kind(self, value: str) -> str:
        if value not in names():
            raise serializers.ValidationError(f"Unknown kind. One of: {', '.join(names())}.")
        return value


class ChangeRequestUpdateSerializer(serializers.Serializer[Any]):
    title = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    spec = serializers.JSONField(required=False)
    target = serializers.JSONField(required=False)
    resolve_at = serializers.ChoiceField(choices=ResolveAt.choices, required=False)
    run_at = serializers.DateTimeField(required=False, allow_null=True)
    window = serializers.JSONField(required=False, allow_null=True)
    expires_at = serializers.DateTimeField(required=False)


class ChangeRequestQuerySerializer(serializers.Serializer[Any]):
    status = StatusField(required=False)
    kind = serializers.CharField(required=False, max_length=32)


class DecisionSerializer(serializers.Serializer[Any]):
    content_hash = serializers.CharField(
        max_length=64, help_text="The hash of the revision you reviewed (refused if outdated)."
    )
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class ChangeDevicePreviewSerializer(serializers.Serializer[Any]):
    device_id = serializers.UUIDField()
    serial = serializers.CharField()
    summary = serializers.CharField()
    diff = serializers.ListField(child=serializers.DictField())


class ChangePreviewSerializer(serializers.Serializer[Any]):
    total = serializers.IntegerField(help_text="Devices that would receive it.")
    excluded = serializers.IntegerField(help_text="Decommissioned or replaced: left out.")
    devices = ChangeDevicePreviewSerializer(many=True)
    next_after = serializers.UUIDField(
        allow_null=True, help_text="Pass as ?after= for the next page; null on the last."
    )


class ChangePreviewQuerySerializer(serializers.Serializer[Any]):
    after = serializers.UUIDField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=500, default=50)


class ApprovalPolicySerializer(serializers.ModelSerializer[ApprovalPolicy]):
    organization = serializers.UUIDField(source="organization_id")
    profile = serializers.UUIDField(
        source="profile_id",
        allow_null=True,
        required=False,
        default=None,
        help_text="The profile it is for; null: the organization's general policy.",
    )

    class Meta:
        model = ApprovalPolicy
        fields = [
            "id",
            "organization",
            "profile",
            "name",
            "command_threshold",
            "device_threshold",
            "configuration_always",
            "configuration_critical_keys",
            "approvals_required",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators: list[Any] = []  # the service checks uniqueness with a clear message

    def validate_configuration_critical_keys(self, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(k, str) and k for k in value):
            raise serializers.ValidationError("A list of dotted configuration keys.")
        return sorted(set(value))

    def validate_approvals_required(self, value: int) -> int:
        if not 1 <= value <= 10:
            raise serializers.ValidationError("Between 1 and 10.")
        return value
