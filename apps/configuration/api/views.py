"""REST endpoints of configuration management (read-only: layers change only by executing a
``configuration`` change request, ``/api/v1/change-requests/``).

- ``GET /configuration/devices/`` (``configuration.view``): desired/reported state per device,
  filter ``status``; ``/summary/``: counts by status.
- ``GET /configuration/devices/{device}/``: one device's state with its desired document.
- ``GET /configuration/devices/{device}/effective/``: computed from the layers now.
- ``GET /configuration/devices/{device}/versions/``: history; ``versions/{n}/``: one version and
  its diff from the previous one (or ``?against=m``).
- ``GET /configuration/layers/{organizations,groups,devices}/``: the layers.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.pagination import CursorPagination
from apps.core.api.viewsets import ScopedReadOnlyViewSet

from .. import selectors
from ..choices import SyncStatus
from ..models import (
    DeviceConfiguration,
    DeviceConfigurationState,
    GroupConfiguration,
    OrganizationConfiguration,
)
from .serializers import (
    DeviceLayerSerializer,
    EffectiveSerializer,
    GroupLayerSerializer,
    OrganizationLayerSerializer,
    StateDetailSerializer,
    StateSerializer,
    SummarySerializer,
    VersionDiffSerializer,
    VersionSerializer,
)


class StatePagination(CursorPagination):
    ordering = ("-device_id",)  # type: ignore[assignment]


class VersionPagination(CursorPagination):
    ordering = ("-version",)  # type: ignore[assignment]


class DeviceStateViewSet(ScopedReadOnlyViewSet):
    queryset = DeviceConfigurationState.objects.all()
    serializer_class = StateSerializer
    pagination_class = StatePagination

    def get_queryset(self) -> QuerySet[Any]:
        status = self.request.query_params.get("status", "")
        states = selectors.state_list(actor=self.actor)
        return states.filter(status=status) if status in SyncStatus.values else states

    def get_serializer_class(self) -> Any:
        return StateDetailSerializer if self.action == "retrieve" else StateSerializer

    @extend_schema(
        parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=SyncStatus.values)]
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(responses=SummarySerializer)
    @action(detail=False, methods=["get"])
    def summary(self, request: Request) -> Response:
        return Response({"counts": selectors.state_counts(actor=self.actor)})

    @extend_schema(responses=EffectiveSerializer)
    @action(detail=True, methods=["get"])
    def effective(self, request: Request, pk: Any = None) -> Response:
        device = selectors.access_device(actor=self.actor, device_id=pk)
        return Response(EffectiveSerializer(selectors.effective_now(device=device)).data)

    @extend_schema(responses=VersionSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=VersionPagination)
    def versions(self, request: Request, pk: Any = None) -> Response:
        device = selectors.access_device(actor=self.actor, device_id=pk)
        page = self.paginate_queryset(selectors.version_list(device=device))
        return self.get_paginated_response(VersionSerializer(page, many=True).data)

    @extend_schema(
        responses=VersionDiffSerializer,
        parameters=[OpenApiParameter("against", OpenApiTypes.INT)],
    )
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<number>[0-9]+)")
    def version(self, request: Request, pk: Any = None, number: str = "") -> Response:
        device = selectors.access_device(actor=self.actor, device_id=pk)
        against = request.query_params.get("against", "")
        found = selectors.version_diff(
            device=device, number=int(number), against=int(against) if against.isdigit() else None
        )
        return Response(VersionDiffSerializer(found).data)


class OrganizationLayerViewSet(ScopedReadOnlyViewSet):
    queryset = OrganizationConfiguration.objects.order_by("-created_at", "-id")
    serializer_class = OrganizationLayerSerializer
    pagination_class = CursorPagination


class GroupLayerViewSet(ScopedReadOnlyViewSet):
    queryset = GroupConfiguration.objects.select_related("group").order_by("-created_at", "-id")
    serializer_class = GroupLayerSerializer
    pagination_class = CursorPagination


class DeviceLayerViewSet(ScopedReadOnlyViewSet):
    queryset = DeviceConfiguration.objects.select_related("device").order_by("-created_at", "-id")
    serializer_class = DeviceLayerSerializer
    pagination_class = CursorPagination
