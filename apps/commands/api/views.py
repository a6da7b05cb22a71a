"""REST endpoints of commands (read-only: commands are created by executing a ``command``
change request, ``/api/v1/change-requests/``).

- ``GET /commands/`` (``command.view``): newest first, cursor-paginated; filters ``request``,
  ``device``, ``status``, ``name``.
- ``GET /commands/{id}/``: one command with its per-device result (output, error, times).
- ``GET /commands/progress/?request=<id>``: counts by status of a request's commands.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.pagination import CursorPagination
from apps.core.api.viewsets import ScopedReadOnlyViewSet

from ..choices import CommandStatus
from ..models import Command
from ..selectors import command_list, command_progress


class CommandSerializer(serializers.ModelSerializer[Command]):
    organization = serializers.UUIDField(source="organization_id", read_only=True)
    request = serializers.UUIDField(source="request_id", read_only=True)
    device = serializers.UUIDField(source="device_id", read_only=True)
    device_serial = serializers.CharField(source="device.serial", read_only=True)

    class Meta:
        model = Command
        fields = [
            "id",
            "organization",
            "request",
            "device",
            "device_serial",
            "name",
            "arguments",
            "status",
            "attempts",
            "timeout_seconds",
            "issued_at",
            "sent_at",
            "received_at",
            "finished_at",
            "expires_at",
            "timeout_at",
            "next_attempt_at",
            "output",
            "error",
            "late_result",
        ]
        read_only_fields = fields


class CommandFilter(filters.FilterSet):
    request = filters.UUIDFilter(field_name="request_id")
    device = filters.UUIDFilter(field_name="device_id")
    status = filters.ChoiceFilter(choices=CommandStatus.choices)
    name = filters.CharFilter(field_name="name")

    class Meta:
        model = Command
        fields = ["request", "device", "status", "name"]


class ProgressQuerySerializer(serializers.Serializer[Any]):
    request = serializers.UUIDField(help_text="The change request whose commands to count.")


class ProgressSerializer(serializers.Serializer[Any]):
    request = serializers.UUIDField()
    counts = serializers.DictField(
        child=serializers.IntegerField(), help_text="Commands by status, and `total`."
    )


class CommandViewSet(ScopedReadOnlyViewSet):
    """Per-device commands and their results."""

    queryset = Command.objects.all()
    serializer_class = CommandSerializer
    filterset_class = CommandFilter
    pagination_class = CursorPagination

    def get_queryset(self) -> QuerySet[Command]:
        return command_list(actor=self.actor).order_by("-created_at", "-id")

    @extend_schema(
        summary="Counts by status of a change request's commands",
        parameters=[ProgressQuerySerializer],
        responses={200: ProgressSerializer},
    )
    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=[])
    def progress(self, request: Request) -> Response:
        query = ProgressQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        request_id = query.validated_data["request"]
        counts = command_progress(actor=self.actor, request_id=request_id)
        if counts is None:
            raise exceptions.NotFound()
        return Response({"request": str(request_id), "counts": counts})
