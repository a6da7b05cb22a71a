"""Input and output shapes of the registry API. No business rules: services hold them."""

from __future__ import annotations

import datetime
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.api.serializers import IdField
from apps.core.models import Job, JobItem, JobStatus
from apps.devices import lifecycle
from apps.devices.choices import DeviceState, TransferStatus
from apps.devices.models import Device, Transfer


def choice(choices: Any, **kwargs: Any) -> serializers.ChoiceField:
    """A choice field with its own schema annotation, so its enum is named after its component
    (``TransferStatusEnum``, ``JobStatusEnum``): several components share the field name
    ``status`` with different choices, which would otherwise collide (a schema warning)."""
    values = [value for value, *_ in (c if isinstance(c, tuple) else (c,) for c in choices)]
    field_class = extend_schema_field({"type": "string", "enum": values})(
        type("InlineChoiceField", (serializers.ChoiceField,), {})
    )
    return field_class(choices=choices, **kwargs)  # type: ignore[no-any-return]


# --- output ------------------------------------------------------------------------------------


class DeviceSerializer(serializers.ModelSerializer[Device]):
    organization = serializers.UUIDField(source="organization_id", read_only=True)
    manufacturer = serializers.UUIDField(source="manufacturer_id", read_only=True)
    profile = serializers.UUIDField(source="profile_version.profile_id", read_only=True)
    profile_version = serializers.UUIDField(source="profile_version_id", read_only=True)
    site = serializers.UUIDField(source="site_id", read_only=True, allow_null=True)
    replaced_by = serializers.UUIDField(source="replaced_by_id", read_only=True, allow_null=True)

    class Meta:
        model = Device
        fields = [
            "id",
            "organization",
            "manufacturer",
            "profile",
            "profile_version",
            "serial",
            "name",
            "state",
            "state_changed_at",
            "tags",
            "attributes",
            "latitude",
            "longitude",
            "site",
            "inventory",
            "firmware_version",
            "connectivity",
            "last_seen_at",
            "replaced_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance: Device) -> dict[str, Any]:
        """The same JSON as the declared fields, built directly: device lists are a hot path
        and DRF's per-field machinery was most of a page's time (bench/registry.py)."""
        return {
            "id": str(instance.id),
            "organization": str(instance.organization_id),
            "manufacturer": str(instance.manufacturer_id),
            "profile": str(instance.profile_version.profile_id),
            "profile_version": str(instance.profile_version_id),
            "serial": instance.serial,
            "name": instance.name,
            "state": instance.state,
            "state_changed_at": _iso(instance.state_changed_at),
            "tags": list(instance.tags),
            "attributes": instance.attributes,
            "latitude": instance.latitude,
            "longitude": instance.longitude,
            "site": _id(instance.site_id),
            "inventory": instance.inventory,
            "firmware_version": instance.firmware_version,
            "connectivity": instance.connectivity,
            "last_seen_at": _iso(instance.last_seen_at),
            "replaced_by": _id(instance.replaced_by_id),
            "created_at": _iso(instance.created_at),
            "updated_at": _iso(instance.updated_at),
        }


def _id(value: Any) -> str | None:
    return None if value is None else str(value)


def _iso(value: datetime.datetime | None) -> str | None:
    """DRF's DateTimeField output: ISO 8601 in the current time zone, UTC written as Z."""
    if value is None:
        return None
    text = timezone.localtime(value).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class TransferSerializer(serializers.ModelSerializer[Transfer]):
    device = serializers.UUIDField(source="device_id", read_only=True)
    from_organization = serializers.UUIDField(source="from_organization_id", read_only=True)
    to_organization = serializers.UUIDField(source="to_organization_id", read_only=True)
    created_by = serializers.UUIDField(source="created_by_id", read_only=True, allow_null=True)
    decided_by = serializers.UUIDField(source="decided_by_id", read_only=True, allow_null=True)
    status = choice(TransferStatus.choices, read_only=True)

    class Meta:
        model = Transfer
        fields = [
            "id",
            "device",
            "from_organization",
            "to_organization",
            "status",
            "note",
            "created_by",
            "decided_by",
            "decided_at",
            "created_at",
        ]
        read_only_fields = fields


class JobSerializer(serializers.ModelSerializer[Job]):
    organization = serializers.UUIDField(source="organization_id", read_only=True)
    percent = serializers.IntegerField(read_only=True)
    status = choice(JobStatus.choices, read_only=True)

    class Meta:
        model = Job
        fields = [
            "id",
            "organization",
            "kind",
            "status",
            "total",
            "processed",
            "succeeded",
            "failed",
            "percent",
            "params",
            "result",
            "error",
            "actor_label",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class JobItemSerializer(serializers.ModelSerializer[JobItem]):
    class Meta:
        model = JobItem
        fields = ["id", "key", "ok", "message"]
        read_only_fields = fields


class TimelineEntrySerializer(serializers.Serializer[Any]):
    time = serializers.DateTimeField()
    kind = serializers.CharField(help_text="audit or event")
    action = serializers.CharField()
    actor_label = serializers.CharField()
    summary = serializers.CharField()
    changes = serializers.JSONField()
    device_id = serializers.UUIDField()
    relation = choice(["self", "predecessor", "successor"])


class TimelineSerializer(serializers.Serializer[Any]):
    results = TimelineEntrySerializer(many=True)
    next_before = serializers.DateTimeField(
        allow_null=True, help_text="Pass as `before` for the next (older) page."
    )
    next_before_id = serializers.UUIDField(
        allow_null=True,
        help_text="Pass as `before_id` with `before`: entries sharing a time are not skipped.",
    )


class ClaimCodeSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    claim_code = serializers.CharField(help_text="Shown once; print it on the product.")


# --- input -------------------------------------------------------------------------------------

SORTS = ("-id", "serial", "-last_seen_at")


class DeviceQuerySerializer(serializers.Serializer[Any]):
    """Query parameters of the device list, mapped onto the selection language."""

    state = serializers.CharField(required=False, help_text="States, comma-separated.")
    profile = serializers.CharField(required=False, help_text="Profile ids, comma-separated.")
    profile_version = serializers.CharField(required=False)
    tags = serializers.CharField(required=False, help_text="Devices having all these tags.")
    tags_any = serializers.CharField(required=False, help_text="Devices having any of these.")
    search = serializers.CharField(required=False, help_text="Serial prefix or name substring.")
    organization = serializers.CharField(required=False, help_text="Organization subtrees.")
    firmware = serializers.CharField(required=False)
    connectivity = serializers.CharField(required=False)
    group = serializers.CharField(required=False)
    attributes = serializers.CharField(required=False, help_text="JSON object to contain.")
    bbox = serializers.CharField(required=False, help_text="min_lat,min_lon,max_lat,max_lon")
    sort = serializers.ChoiceField(choices=SORTS, required=False, default="-id")


class DeviceCreateSerializer(serializers.Serializer[Any]):
    organization = IdField()
    profile_version = IdField()
    serial = serializers.CharField(max_length=128)
    name = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    tags = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, default=list
    )
    attributes = serializers.JSONField(required=False, default=dict)
    latitude = serializers.FloatField(required=False, allow_null=True, default=None)
    longitude = serializers.FloatField(required=False, allow_null=True, default=None)
    site = IdField(required=False, allow_null=True, default=None)
    state = serializers.ChoiceField(
        choices=DeviceState.choices,
        required=False,
        default=DeviceState.ESCROW,
        help_text="escrow (default), discovered or active.",
    )


class DeviceUpdateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    attributes = serializers.JSONField(required=False)
    latitude = serializers.FloatField(required=False, allow_null=True)
    longitude = serializers.FloatField(required=False, allow_null=True)
    site = IdField(required=False, allow_null=True)


class TransitionSerializer(serializers.Serializer[Any]):
    transition = serializers.ChoiceField(choices=sorted(lifecycle.TRANSITIONS))
    reason = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)


class BulkTransitionSerializer(serializers.Serializer[Any]):
    organization = IdField()
    filter = serializers.JSONField(help_text="A selection (the fleet filter language), plus ids.")
    transition = serializers.ChoiceField(choices=sorted(lifecycle.TRANSITIONS))


class TransferCreateSerializer(serializers.Serializer[Any]):
    to_organization = serializers.UUIDField()
    note = serializers.CharField(max_length=1000, required=False, default="", allow_blank=True)


class ClaimSerializer(serializers.Serializer[Any]):
    organization = IdField()
    manufacturer = serializers.UUIDField()
    serial = serializers.CharField(max_length=128)
    claim_code = serializers.CharField(max_length=200)


class ReplaceSerializer(serializers.Serializer[Any]):
    successor = serializers.UUIDField()


class TransferQuerySerializer(serializers.Serializer[Any]):
    direction = serializers.ChoiceField(choices=["incoming", "outgoing"], required=False)
    status = choice(TransferStatus.choices, required=False)


class JobItemQuerySerializer(serializers.Serializer[Any]):
    ok = serializers.BooleanField(required=False, allow_null=True, default=None)


class TimelineQuerySerializer(serializers.Serializer[Any]):
    before = serializers.DateTimeField(required=False)
    before_id = serializers.UUIDField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)
