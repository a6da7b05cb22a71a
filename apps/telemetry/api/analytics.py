"""REST endpoints of telemetry analytics (docs/analytics.md).

- ``GET /telemetry/aggregate/``: time-bucketed aggregates (``telemetry.view``);
- ``GET /telemetry/aggregate/export/``: the same as CSV, streamed (``telemetry.export``);
- ``GET /telemetry/samples/``: one device's raw samples over a range, cursor-paginated;
- ``GET /telemetry/samples/export/``: the same as CSV, streamed from a server-side cursor;
- ``GET /telemetry/latest/``: one device's latest values.

A device, profile, group or organization outside the caller's scope (or a malformed id) is
404; bad parameters are 400 naming them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.pagination import CursorPagination
from apps.core.api.viewsets import ScopedViewSetMixin

from .. import analytics, analytics_samples
from ..models import TelemetrySample
from .analytics_params import (
    AGGREGATE_PARAMETERS,
    SAMPLE_PARAMETERS,
    aggregate_document,
    aggregate_query,
    device_parameter,
    sample_range,
)

# --- response documents ------------------------------------------------------------------------


class SeriesSerializer(serializers.Serializer[Any]):
    key = serializers.CharField(help_text="Device, profile, group, organization id or location.")
    label = serializers.CharField()  # type: ignore[assignment]  # a field, not Field.label
    count = serializers.ListField(child=serializers.IntegerField(), help_text="Per bucket.")
    values = serializers.DictField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text="Per aggregate, one value per bucket (null: no sample in the bucket).",
    )


class AggregateSerializer(serializers.Serializer[Any]):
    metric = serializers.CharField()
    kind = serializers.ChoiceField(choices=["telemetry", "heartbeat"])
    aggregates = serializers.ListField(child=serializers.CharField())
    bucket_seconds = serializers.IntegerField()
    group_by = serializers.CharField()
    buckets = serializers.ListField(
        child=serializers.DateTimeField(), help_text="Start of every bucket of the range."
    )
    series = SeriesSerializer(many=True)
    from_ = serializers.DateTimeField(label="from")
    to = serializers.DateTimeField()

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class SampleSerializer(serializers.Serializer[Any]):
    device = serializers.UUIDField(source="device_id")
    ts = serializers.DateTimeField()
    kind = serializers.SerializerMethodField()
    boot = serializers.IntegerField()
    seq = serializers.IntegerField()
    idx = serializers.IntegerField()
    received_at = serializers.DateTimeField()
    metrics = serializers.JSONField()
    extra = serializers.JSONField(allow_null=True)

    def get_kind(self, sample: TelemetrySample) -> str:
        return analytics_samples.KIND_NAMES[sample.kind]


class LatestSerializer(serializers.Serializer[Any]):
    device = serializers.UUIDField()
    metrics = serializers.JSONField()
    metrics_at = serializers.DateTimeField(allow_null=True)
    vitals = serializers.JSONField()
    vitals_at = serializers.DateTimeField(allow_null=True)
    uptime_s = serializers.IntegerField(allow_null=True)
    boot = serializers.IntegerField(allow_null=True)
    updated_at = serializers.DateTimeField(allow_null=True)


class SampleCursorPagination(CursorPagination):
    """Oldest first, in primary-key order: a series reads in time order."""

    ordering = ("ts", "kind", "boot", "seq", "idx")  # type: ignore[assignment]
    max_page_size = 1000


def _csv_lines(rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _csv_response(rows: Iterable[Iterable[Any]], name: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(_csv_lines(rows), content_type="text/csv")
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
    return response


CSV = {(200, "text/csv"): OpenApiResponse(response=OpenApiTypes.STR, description="CSV")}


class TelemetryAnalyticsViewSet(ScopedViewSetMixin, viewsets.GenericViewSet):  # type: ignore[misc]
    """Aggregates, raw samples and latest values of the devices the caller may read."""

    queryset = TelemetrySample.objects.all()
    serializer_class = SampleSerializer
    filter_backends = ()
    pagination_class = None

    def _aggregate(self, request: Request) -> analytics.AggregateResult:
        query = aggregate_query(request.query_params)
        return analytics.aggregate(actor=self.actor, query=query)

    @extend_schema(
        summary="Time-bucketed aggregates of a metric",
        parameters=AGGREGATE_PARAMETERS,
        responses={200: AggregateSerializer},
    )
    @action(detail=False, methods=["get"])
    def aggregate(self, request: Request) -> Response:
        return Response(aggregate_document(self._aggregate(request)))

    @extend_schema(
        summary="Export aggregates as CSV",
        description="The aggregate query's data: one row per series and bucket, every bucket.",
        parameters=AGGREGATE_PARAMETERS,
        responses=CSV,
    )
    @action(detail=False, methods=["get"], url_path="aggregate/export", scope_action="export")
    def aggregate_export(self, request: Request) -> StreamingHttpResponse:
        result = self._aggregate(request)
        return _csv_response(analytics.aggregate_csv(result), "telemetry-aggregate")

    @extend_schema(
        summary="Raw samples of one device over a range",
        parameters=SAMPLE_PARAMETERS,
        responses={200: SampleSerializer(many=True)},
    )
    @action(detail=False, methods=["get"], pagination_class=SampleCursorPagination)
    def samples(self, request: Request) -> Response:
        device = device_parameter(self.actor, request.query_params)
        start, end, kind = sample_range(request.query_params)
        rows = analytics_samples.sample_list(device=device, start=start, end=end, kind=kind)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(SampleSerializer(page, many=True).data)

    @extend_schema(
        summary="Export one device's raw samples as CSV",
        description="Streamed from a server-side cursor: any size, never held in memory. "
        "``metric`` (repeated or comma-separated) adds one column per metric.",
        parameters=[
            *SAMPLE_PARAMETERS,
            OpenApiParameter("metric", str, description="Metrics to give their own column."),
        ],
        responses=CSV,
    )
    @action(detail=False, methods=["get"], url_path="samples/export", scope_action="export")
    def samples_export(self, request: Request) -> StreamingHttpResponse:
        device = device_parameter(self.actor, request.query_params)
        start, end, kind = sample_range(request.query_params)
        columns = analytics_samples.metric_columns(request.query_params.getlist("metric"))
        rows = analytics_samples.sample_csv(
            device=device, start=start, end=end, kind=kind, columns=columns
        )
        return _csv_response(rows, f"telemetry-{device.serial}")

    @extend_schema(
        summary="Latest values of one device",
        parameters=[OpenApiParameter("device", OpenApiTypes.UUID, required=True)],
        responses={200: LatestSerializer},
    )
    @action(detail=False, methods=["get"])
    def latest(self, request: Request) -> Response:
        device = device_parameter(self.actor, request.query_params)
        return Response(LatestSerializer(analytics_samples.latest_document(device)).data)
