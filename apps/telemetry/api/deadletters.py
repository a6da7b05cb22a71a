"""REST endpoints of the telemetry dead letters.

- ``GET /telemetry/dead-letters/`` (``telemetry.view``): the messages the pipeline refused, newest
  first, cursor-paginated; filters ``reason``, ``status``, ``device``, ``organization``.
- ``GET /telemetry/dead-letters/{id}/``: one, with its raw payload (as text and base64).
- ``POST /telemetry/dead-letters/{id}/replay/`` (``telemetry.replay``): run it through the
  pipeline again (after the profile was fixed); it becomes ``replayed``, or stays ``new`` with
  the reason it was refused this time.
- ``POST /telemetry/dead-letters/{id}/discard/`` (``telemetry.replay``): take it off the queue.

Replaying or discarding a dead letter that is no longer ``new`` is 409. Dead letters of unknown
devices belong to no organization: platform staff only.
"""

from __future__ import annotations

import base64
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

from ..choices import DeadLetterReason, DeadLetterStatus
from ..models import DeadLetter
from ..pipeline import dead_letter_discard, dead_letter_replay


class DeadLetterSerializer(serializers.ModelSerializer[DeadLetter]):
    organization = serializers.UUIDField(source="organization_id", allow_null=True)
    device = serializers.UUIDField(source="device_id", allow_null=True)
    device_serial = serializers.SerializerMethodField()
    handled_by = serializers.SerializerMethodField()
    payload = serializers.SerializerMethodField(
        help_text="The raw payload as UTF-8 text (undecodable bytes replaced by U+FFFD)."
    )
    payload_base64 = serializers.SerializerMethodField(help_text="The raw payload, exactly.")
    payload_size = serializers.SerializerMethodField()

    class Meta:
        model = DeadLetter
        fields = [
            "id",
            "received_at",
            "organization",
            "device",
            "device_serial",
            "source",
            "topic",
            "reason",
            "detail",
            "status",
            "replay_count",
            "handled_at",
            "handled_by",
            "payload",
            "payload_base64",
            "payload_size",
        ]
        read_only_fields = fields

    def get_device_serial(self, letter: DeadLetter) -> str | None:
        return letter.device.serial if letter.device is not None else None

    def get_handled_by(self, letter: DeadLetter) -> str | None:
        return letter.handled_by.email if letter.handled_by is not None else None

    def get_payload(self, letter: DeadLetter) -> str:
        return bytes(letter.payload).decode("utf-8", errors="replace")

    def get_payload_base64(self, letter: DeadLetter) -> str:
        return base64.b64encode(bytes(letter.payload)).decode("ascii")

    def get_payload_size(self, letter: DeadLetter) -> int:
        return len(letter.payload)


class DeadLetterFilter(filters.FilterSet):
    reason = filters.ChoiceFilter(choices=DeadLetterReason.choices)
    status = filters.ChoiceFilter(choices=DeadLetterStatus.choices)
    device = filters.UUIDFilter(field_name="device_id")
    organization = filters.UUIDFilter(field_name="organization_id")

    class Meta:
        model = DeadLetter
        fields = ["reason", "status", "device", "organization"]


class DeadLetterPagination(CursorPagination):
    ordering = ("-received_at", "-id")


class NotNew(exceptions.APIException):
    status_code = 409
    default_code = "conflict"
    default_detail = "Only new dead letters can be replayed or discarded."


class DeadLetterViewSet(ScopedReadOnlyViewSet):
    """Messages the ingest pipeline refused, with their reason and raw payload."""

    queryset = DeadLetter.objects.select_related("device", "handled_by")
    serializer_class = DeadLetterSerializer
    filterset_class = DeadLetterFilter
    pagination_class = DeadLetterPagination

    def get_queryset(self) -> QuerySet[DeadLetter]:
        return super().get_queryset().order_by("-received_at", "-id")

    @extend_schema(
        summary="Run a dead letter through the pipeline again",
        request=None,
        responses={200: DeadLetterSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="replay")
    def replay(self, request: Request, pk: Any = None) -> Response:
        letter = self._new_one()
        dead_letter_replay(actor=self.actor, dead_letter_ids=[letter.pk])
        return self.render(self.get_queryset().get(pk=letter.pk))

    @extend_schema(
        summary="Discard a dead letter (its payload is kept)",
        request=None,
        responses={200: DeadLetterSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="replay")
    def discard(self, request: Request, pk: Any = None) -> Response:
        letter = self._new_one()
        dead_letter_discard(actor=self.actor, dead_letter_ids=[letter.pk])
        return self.render(self.get_queryset().get(pk=letter.pk))

    def _new_one(self) -> DeadLetter:
        """The dead letter of the URL: 404 unseen, 403 without the permission, 409 handled."""
        letter: DeadLetter = self.get_object()
        if letter.status != DeadLetterStatus.NEW:
            raise NotNew()
        return letter
