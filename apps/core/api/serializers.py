"""Shared API fields and the serializers of the audit log and the domain events."""

from __future__ import annotations

import uuid
from typing import Any

from rest_framework import serializers

from apps.core.models import AuditLog, Event, EventDelivery

from .viewsets import parse_uuid


class IdField(serializers.UUIDField):
    """A reference by id in a request body: a malformed id is not found (404), like a missing
    or foreign one, so the answer never depends on which of the three it was."""

    def to_internal_value(self, data: Any) -> uuid.UUID:
        return parse_uuid(data)


class AuditLogSerializer(serializers.ModelSerializer[AuditLog]):
    organization = serializers.UUIDField(source="organization_id", allow_null=True)
    actor_user = serializers.UUIDField(source="actor_user_id", allow_null=True)
    actor_api_key = serializers.UUIDField(source="actor_api_key_id", allow_null=True)
    actor_device = serializers.UUIDField(source="actor_device_id", allow_null=True)

    class Meta:
        model = AuditLog
        fields = [
            "id",
            "created_at",
            "organization",
            "actor_kind",
            "actor_user",
            "actor_api_key",
            "actor_device",
            "actor_label",
            "source",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "changes",
            "request_id",
        ]
        read_only_fields = fields


class AuditLogQuerySerializer(serializers.Serializer[Any]):
    """Query parameters of the audit log list and its CSV export."""

    organization = serializers.UUIDField(required=False)
    action = serializers.CharField(
        required=False, max_length=100, help_text="Action prefix, e.g. `membership.`."
    )
    actor = serializers.CharField(
        required=False, max_length=255, help_text="Part of the actor's label (email, key name)."
    )
    object_type = serializers.CharField(required=False, max_length=100)
    object_id = serializers.CharField(required=False, max_length=64)
    since = serializers.DateTimeField(required=False, help_text="Inclusive lower bound.")
    until = serializers.DateTimeField(required=False, help_text="Exclusive upper bound.")

    def selector_arguments(self) -> dict[str, Any]:
        data = self.validated_data
        return {
            "organization_id": data.get("organization"),
            "action": data.get("action", ""),
            "actor_label": data.get("actor", ""),
            "object_type": data.get("object_type", ""),
            "object_id": data.get("object_id", ""),
            "since": data.get("since"),
            "until": data.get("until"),
        }


class EventDeliverySerializer(serializers.ModelSerializer[EventDelivery]):
    class Meta:
        model = EventDelivery
        fields = [
            "id",
            "consumer",
            "status",
            "attempts",
            "next_attempt_at",
            "delivered_at",
            "last_error",
        ]
        read_only_fields = fields


class EventSerializer(serializers.ModelSerializer[Event]):
    organization = serializers.UUIDField(source="organization_id", allow_null=True)
    deliveries = EventDeliverySerializer(many=True, read_only=True)

    class Meta:
        model = Event
        fields = [
            "id",
            "created_at",
            "organization",
            "type",
            "subject_type",
            "subject_id",
            "payload",
            "deliveries",
        ]
        read_only_fields = fields


class EventRedeliverSerializer(serializers.Serializer[Any]):
    consumers = serializers.ListField(
        child=serializers.CharField(max_length=100),
        required=False,
        help_text="Only these consumers' dead-lettered deliveries (default: all of them).",
    )
