"""REST endpoints of provisioning templates, and a preview of what provisioning would give a
device of a profile in an organization (the same resolution activation applies)."""

from __future__ import annotations

from typing import Any

from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.serializers import IdField
from apps.core.api.viewsets import (
    ScopedCreateMixin,
    ScopedPartialUpdateMixin,
    ScopedViewSetMixin,
    parse_uuid,
)
from apps.profiles import provisioning
from apps.profiles.models import DeviceProfile, ProvisioningTemplate

# --- serializers -------------------------------------------------------------------------------


class TemplateSerializer(serializers.ModelSerializer[ProvisioningTemplate]):
    organization = serializers.UUIDField(source="organization_id", read_only=True)
    profile = serializers.UUIDField(source="profile_id", read_only=True, allow_null=True)
    configuration = serializers.JSONField(read_only=True)
    software = serializers.JSONField(read_only=True)

    class Meta:
        model = ProvisioningTemplate
        fields = [
            "id",
            "organization",
            "name",
            "profile",
            "configuration",
            "heartbeat_interval_seconds",
            "heartbeat_missed_beats",
            "routing_labels",
            "software",
            "enabled",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class TemplateFieldsSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    profile = IdField(required=False, allow_null=True, help_text="Empty: organization-wide.")
    configuration = serializers.JSONField(required=False, help_text="Initial configuration.")
    heartbeat_interval_seconds = serializers.IntegerField(required=False, allow_null=True)
    heartbeat_missed_beats = serializers.IntegerField(required=False, allow_null=True)
    routing_labels = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, max_length=32
    )
    software = serializers.JSONField(
        required=False, help_text='Baseline, e.g. {"firmware": "1.4"}.'
    )
    enabled = serializers.BooleanField(required=False)


class TemplateCreateSerializer(TemplateFieldsSerializer):
    organization = IdField()


class TemplateUpdateSerializer(TemplateFieldsSerializer):
    name = serializers.CharField(max_length=200, required=False)


class PreviewQuerySerializer(serializers.Serializer[Any]):
    organization = serializers.UUIDField()
    profile = serializers.UUIDField()


class TemplateRefSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    name = serializers.CharField()


class HeartbeatSerializer(serializers.Serializer[Any]):
    interval_seconds = serializers.IntegerField()
    missed_beats = serializers.IntegerField()


class PreviewSerializer(serializers.Serializer[Any]):
    profile_version = serializers.UUIDField()
    templates = TemplateRefSerializer(many=True, help_text="Applied in this order, weakest first.")
    configuration = serializers.JSONField()
    heartbeat = HeartbeatSerializer()
    routing_labels = serializers.ListField(child=serializers.CharField())
    software = serializers.JSONField()


class TemplateFilter(filters.FilterSet):
    organization = filters.UUIDFilter(field_name="organization_id")
    profile = filters.UUIDFilter(field_name="profile_id")
    enabled = filters.BooleanFilter()

    class Meta:
        model = ProvisioningTemplate
        fields = ["organization", "profile", "enabled"]


# --- the viewset -------------------------------------------------------------------------------


@extend_schema_view(
    create=extend_schema(request=TemplateCreateSerializer, responses={201: TemplateSerializer}),
    partial_update=extend_schema(
        request=TemplateUpdateSerializer, responses={200: TemplateSerializer}
    ),
)
class ProvisioningTemplateViewSet(  # type: ignore[misc]
    ScopedViewSetMixin,
    ScopedCreateMixin,
    ScopedPartialUpdateMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """What devices get on activation, by profile and by organization (deeper wins)."""

    queryset = ProvisioningTemplate.objects.order_by("name", "id")
    serializer_class = TemplateSerializer
    filterset_class = TemplateFilter
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    input_serializers = {
        "create": TemplateCreateSerializer,
        "partial_update": TemplateUpdateSerializer,
    }

    def _profile(self, data: dict[str, Any]) -> dict[str, Any]:
        values = dict(data)
        if values.get("profile") is not None:
            visible = DeviceProfile.objects.for_actor(self.actor, "view").select_related(
                "organization"
            )
            values["profile"] = visible.filter(pk=values["profile"]).first()
            if values["profile"] is None:
                raise exceptions.NotFound()
        return values

    def create_object(self, serializer: Any) -> ProvisioningTemplate:
        data = self._profile(serializer.validated_data)
        organization = self.organization_for(data.pop("organization"))
        return provisioning.template_create(actor=self.actor, organization=organization, **data)

    def update_object(self, serializer: Any) -> ProvisioningTemplate:
        data = self._profile(serializer.validated_data)
        return provisioning.template_update(actor=self.actor, template=serializer.instance, **data)

    def destroy_object(self, instance: ProvisioningTemplate) -> None:
        provisioning.template_delete(actor=self.actor, template=instance)

    @extend_schema(
        summary="What a device of a profile activated in an organization would get",
        parameters=[
            OpenApiParameter("organization", str, required=True, description="Organization id."),
            OpenApiParameter("profile", str, required=True, description="Profile id."),
        ],
        responses={200: PreviewSerializer},
    )
    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=[])
    def preview(self, request: Request) -> Response:
        organization = self.organization_for(request.query_params.get("organization"), "view")
        profile_id = parse_uuid(request.query_params.get("profile"))
        profile = (
            DeviceProfile.objects.for_actor(self.actor, "view")
            .select_related("organization")
            .filter(pk=profile_id)
            .first()
        )
        if profile is None:
            raise exceptions.NotFound()
        result = provisioning.provisioning_preview(organization=organization, profile=profile)
        return Response(PreviewSerializer(result).data)
