"""The audit log (list, CSV export) and the domain events (list, redeliver dead letters)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core import events
from apps.core.models import AuditLog, DeliveryStatus, Event, EventDelivery
from apps.core.selectors import audit_log_csv, audit_log_list

from .filters import EventFilter
from .serializers import (
    AuditLogQuerySerializer,
    AuditLogSerializer,
    EventRedeliverSerializer,
    EventSerializer,
)
from .viewsets import ScopedReadOnlyViewSet


@extend_schema_view(list=extend_schema(parameters=[AuditLogQuerySerializer]))
class AuditLogViewSet(ScopedReadOnlyViewSet):
    """Append-only record of every write in the organizations the caller may audit."""

    queryset = AuditLog.objects.all()
    serializer_class = AuditLogSerializer
    filter_backends = ()  # the selector applies the filters

    def get_queryset(self) -> QuerySet[AuditLog]:
        if self.action == "retrieve":
            return super().get_queryset()
        query = AuditLogQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        rows = audit_log_list(actor=self.actor, **query.selector_arguments())
        if self.action == "export":  # only where the caller may export, not merely view
            rows = rows & AuditLog.objects.for_actor(self.actor, "export")
        return rows

    @extend_schema(
        summary="Export the audit log as CSV",
        parameters=[AuditLogQuerySerializer],
        responses={
            (200, "text/csv"): OpenApiResponse(
                response=OpenApiTypes.STR, description="CSV, header row first, newest first."
            )
        },
    )
    @action(detail=False, methods=["get"], scope_action="export", pagination_class=None)
    def export(self, request: Request) -> StreamingHttpResponse:
        rows = self.get_queryset()
        response = StreamingHttpResponse(audit_log_csv(rows), content_type="text/csv")
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.csv"'
        return response


class EventViewSet(ScopedReadOnlyViewSet):
    """Domain events of the caller's organizations, each with its consumers' delivery states."""

    queryset = Event.objects.prefetch_related(
        Prefetch("deliveries", queryset=EventDelivery.objects.order_by("consumer", "id"))
    )
    serializer_class = EventSerializer
    filterset_class = EventFilter
    input_serializers = {"redeliver": EventRedeliverSerializer}

    @extend_schema(
        summary="Redeliver an event's dead-lettered deliveries",
        request=EventRedeliverSerializer,
        responses={200: EventSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="redeliver")
    def redeliver(self, request: Request, pk: Any = None) -> Response:
        event = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            dead = EventDelivery.objects.filter(event=event, status=DeliveryStatus.DEAD)
            if "consumers" in serializer.validated_data:
                dead = dead.filter(consumer__in=serializer.validated_data["consumers"])
            # the service locks, re-checks the actor's scope and writes the audit record
            if not events.redeliver(
                actor=self.actor, delivery_ids=dead.values_list("id", flat=True)
            ):
                raise exceptions.ValidationError(
                    {"consumers": ["This event has no matching dead-lettered delivery."]}
                )
            self.ensure_in_scope(event)
        return self.render(self.get_queryset().get(pk=event.pk))
