"""REST endpoints of alerting: alert rules (CRUD, ``alertrule.*``) and alerts (list, retrieve,
acknowledge / resolve / reopen with ``alert.change``).

Rules reference a profile, a group or a device by id; an id the caller cannot see is refused
exactly like one that does not exist ("Unknown profile."), so nothing leaks.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.pagination import CursorPagination
from apps.core.api.viewsets import (
    ScopedCreateMixin,
    ScopedPartialUpdateMixin,
    ScopedReadOnlyViewSet,
    ScopedViewSetMixin,
)
from apps.devices.models import Device, DeviceGroup
from apps.profiles.models import DeviceProfile

from ..alerting import selectors, services
from ..choices import AlertStatus, RuleKind, Severity
from ..models import Alert, AlertRule

# --- serializers -------------------------------------------------------------------------------


class AlertRuleSerializer(serializers.ModelSerializer[AlertRule]):
    class Meta:
        model = AlertRule
        fields = [
            "id",
            "organization",
            "name",
            "description",
            "enabled",
            "kind",
            "condition",
            "severity",
            "open_after_seconds",
            "clear_after_seconds",
            "auto_resolve",
            "profile",
            "group",
            "device",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class _RuleFields(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)
    condition = serializers.JSONField(help_text="The kind's parameters (docs/alerts.md).")
    severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    open_after_seconds = serializers.IntegerField(min_value=0, required=False)
    clear_after_seconds = serializers.IntegerField(min_value=0, required=False)
    auto_resolve = serializers.BooleanField(required=False)
    profile = serializers.UUIDField(required=False, allow_null=True)
    group = serializers.UUIDField(required=False, allow_null=True)
    device = serializers.UUIDField(required=False, allow_null=True)


class AlertRuleCreateSerializer(_RuleFields):
    organization = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=RuleKind.choices)


class AlertRuleUpdateSerializer(_RuleFields):
    name = serializers.CharField(max_length=200, required=False)
    condition = serializers.JSONField(required=False)


class _Rule(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    name = serializers.CharField()
    kind = serializers.CharField()


class _Device(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    serial = serializers.CharField()


class AlertSerializer(serializers.ModelSerializer[Alert]):
    rule = _Rule(read_only=True)
    device = _Device(read_only=True, allow_null=True)
    acknowledged_by = serializers.SerializerMethodField()
    resolved_by = serializers.SerializerMethodField()

    class Meta:
        model = Alert
        fields = [
            "id",
            "organization",
            "rule",
            "device",
            "severity",
            "status",
            "message",
            "details",
            "opened_at",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "resolved_by",
            "updated_at",
        ]
        read_only_fields = fields

    def get_acknowledged_by(self, alert: Alert) -> str | None:
        return alert.acknowledged_by.email if alert.acknowledged_by else None

    def get_resolved_by(self, alert: Alert) -> str | None:
        return alert.resolved_by.email if alert.resolved_by else None


class AlertActionSerializer(serializers.Serializer[Any]):
    note = serializers.CharField(required=False, allow_blank=True, max_length=500, default="")


# --- filters and pagination --------------------------------------------------------------------

STATUS_FILTER = [(selectors.ACTIVE, "Open or acknowledged"), *AlertStatus.choices]


class AlertFilter(filters.FilterSet):
    organization = filters.UUIDFilter(field_name="organization_id")
    status = filters.ChoiceFilter(choices=STATUS_FILTER, method="filter_status")
    severity = filters.ChoiceFilter(choices=Severity.choices)
    device = filters.UUIDFilter(field_name="device_id")
    rule = filters.UUIDFilter(field_name="rule_id")

    class Meta:
        model = Alert
        fields = ["organization", "status", "severity", "device", "rule"]

    def filter_status(self, queryset: QuerySet[Alert], name: str, value: str) -> QuerySet[Alert]:
        if value == selectors.ACTIVE:
            return queryset.exclude(status=AlertStatus.RESOLVED)
        return queryset.filter(status=value)


class AlertPagination(CursorPagination):
    ordering = ("-opened_at", "-id")  # type: ignore[assignment]


# --- viewsets ----------------------------------------------------------------------------------


def _reference(model: Any, value: uuid.UUID | None) -> Any:
    """A reference by id only: the rule services check that the actor sees it and that it is
    on the rule organization's line of the tree ("Unknown profile." otherwise, with every other
    field error of the request)."""
    return None if value is None else model(pk=value)


def _rule_fields(data: dict[str, Any]) -> dict[str, Any]:
    fields = dict(data)
    for field, model in (("profile", DeviceProfile), ("group", DeviceGroup), ("device", Device)):
        if field in fields:
            fields[field] = _reference(model, fields[field])
    return fields


@extend_schema_view(
    create=extend_schema(request=AlertRuleCreateSerializer, responses={201: AlertRuleSerializer}),
    partial_update=extend_schema(
        request=AlertRuleUpdateSerializer, responses={200: AlertRuleSerializer}
    ),
)
class AlertRuleViewSet(  # type: ignore[misc]
    ScopedViewSetMixin,
    ScopedCreateMixin,
    ScopedPartialUpdateMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Alert rules of the caller's organizations; ``?organization=``, ``?kind=`` and
    ``?enabled=`` narrow the list."""

    queryset = AlertRule.objects.all()
    serializer_class = AlertRuleSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filterset_fields = ["organization", "kind", "enabled"]
    input_serializers = {
        "create": AlertRuleCreateSerializer,
        "partial_update": AlertRuleUpdateSerializer,
    }

    def create_object(self, serializer: Any) -> AlertRule:
        fields = _rule_fields(serializer.validated_data)
        organization = self.organization_for(fields.pop("organization"))
        return services.rule_create(actor=self.actor, organization=organization, **fields)

    def update_object(self, serializer: Any) -> AlertRule:
        fields = _rule_fields(serializer.validated_data)
        return services.rule_update(actor=self.actor, rule=serializer.instance, **fields)

    def destroy_object(self, instance: AlertRule) -> None:
        services.rule_delete(actor=self.actor, rule=instance)


class AlertViewSet(ScopedReadOnlyViewSet):  # type: ignore[misc]
    """Alerts of the caller's organizations, newest first. ``?status=active`` lists the open and
    acknowledged ones; ``severity``, ``device`` and ``rule`` narrow further."""

    queryset = Alert.objects.select_related("rule", "device", "acknowledged_by", "resolved_by")
    serializer_class = AlertSerializer
    filterset_class = AlertFilter
    pagination_class = AlertPagination
    input_serializers = {
        "acknowledge": AlertActionSerializer,
        "resolve": AlertActionSerializer,
        "reopen": AlertActionSerializer,
    }

    def _transition(self, request: Request, service: Any) -> Response:
        alert = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            service(actor=self.actor, alert=alert, note=serializer.validated_data["note"])
            self.ensure_in_scope(alert)
        return self.render(self.get_queryset().get(pk=alert.pk))

    @extend_schema(
        summary="Acknowledge an open alert (someone is on it)",
        request=AlertActionSerializer,
        responses={200: AlertSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="change")
    def acknowledge(self, request: Request, pk: Any = None) -> Response:
        return self._transition(request, services.alert_acknowledge)

    @extend_schema(
        summary="Resolve an open or acknowledged alert",
        description="Its condition starts over: if the problem persists a new alert opens.",
        request=AlertActionSerializer,
        responses={200: AlertSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="change")
    def resolve(self, request: Request, pk: Any = None) -> Response:
        return self._transition(request, services.alert_resolve)

    @extend_schema(
        summary="Reopen a resolved alert",
        description="Refused (400) when another alert of the same rule and device is open.",
        request=AlertActionSerializer,
        responses={200: AlertSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="change")
    def reopen(self, request: Request, pk: Any = None) -> Response:
        return self._transition(request, services.alert_reopen)
