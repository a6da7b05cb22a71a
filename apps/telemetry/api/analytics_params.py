"""Query parameters of the analytics endpoints: parsing, and their OpenAPI description.

Ids are ``404`` when malformed (as when missing or foreign: the answer never tells which);
times are ISO 8601 (a time without an offset is UTC); anything else wrong is a ``400`` naming
the parameter.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.http import Http404, QueryDict
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.fields import DateTimeField

from apps.core.actors import Actor
from apps.devices.models import Device

from .. import analytics
from ..analytics_samples import KIND_NAMES, access_telemetry_device

__all__ = [
    "AGGREGATE_PARAMETERS",
    "SAMPLE_PARAMETERS",
    "aggregate_document",
    "aggregate_query",
    "device_parameter",
    "sample_range",
]

RANGE_PARAMETERS = [
    OpenApiParameter(
        "from", OpenApiTypes.DATETIME, description="Inclusive start (default: to - 24 h)."
    ),
    OpenApiParameter("to", OpenApiTypes.DATETIME, description="Exclusive end (default: now)."),
]
AGGREGATE_PARAMETERS = [
    OpenApiParameter(
        "metric",
        str,
        required=True,
        description="A telemetry metric (`temperature`) or a heartbeat vital "
        "(`vitals.battery_pct`). A name no device reported has no data (no series).",
    ),
    OpenApiParameter(
        "agg",
        str,
        description=f"Comma-separated, default avg: {', '.join(analytics.AGGREGATES)}.",
    ),
    OpenApiParameter(
        "bucket",
        str,
        description="Bucket size: `auto` (default, at most 240 buckets), `30s`, `5m`, `1h`, "
        "`1d` or seconds. At most 2,000 buckets per query.",
    ),
    *RANGE_PARAMETERS,
    OpenApiParameter("group_by", str, enum=list(analytics.GROUP_BY), description="Default none."),
    OpenApiParameter(
        "device", OpenApiTypes.UUID, many=True, description="Repeated or comma-separated."
    ),
    OpenApiParameter("profile", OpenApiTypes.UUID, description="A device profile."),
    OpenApiParameter("group", OpenApiTypes.UUID, description="A static or dynamic group."),
    OpenApiParameter("organization", OpenApiTypes.UUID, description="An organization subtree."),
]
SAMPLE_PARAMETERS = [
    OpenApiParameter("device", OpenApiTypes.UUID, required=True),
    *RANGE_PARAMETERS,
    OpenApiParameter("kind", str, enum=["telemetry", "heartbeat"], description="Default both."),
]


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value.strip())
    except (TypeError, ValueError, AttributeError):
        raise Http404("Not found.") from None


def _optional_uuid(params: QueryDict, name: str) -> uuid.UUID | None:
    value = params.get(name, "")
    return _uuid(value) if value else None


def _time(params: QueryDict, name: str) -> datetime | None:
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        value = parse_datetime(text.replace(" ", "+"))  # a raw "+" in a URL arrives as " "
    except ValueError:
        value = None
    if value is None:
        raise ValidationError({name: "An ISO 8601 date and time, e.g. 2026-11-30T10:00:00Z."})
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def aggregate_query(params: QueryDict) -> analytics.AggregateQuery:
    devices = [
        _uuid(part) for value in params.getlist("device") for part in value.split(",") if part
    ]
    return analytics.build_query(
        metric=params.get("metric", ""),
        agg=params.get("agg", "avg"),
        bucket=params.get("bucket", "auto"),
        start=_time(params, "from"),
        end=_time(params, "to"),
        group_by=params.get("group_by", "none") or "none",
        devices=devices,
        profile=_optional_uuid(params, "profile"),
        group=_optional_uuid(params, "group"),
        organization=_optional_uuid(params, "organization"),
    )


def device_parameter(actor: Actor, params: QueryDict) -> Device:
    if not params.get("device"):
        raise ValidationError({"device": "This parameter is required."})
    return access_telemetry_device(actor=actor, device_id=params["device"])


def sample_range(params: QueryDict) -> tuple[datetime, datetime, int | None]:
    """``[from, to)`` (default: the last 24 hours; at most the analytics range) and kind."""
    end = _time(params, "to") or datetime.now(tz=UTC)
    start = _time(params, "from") or end - timedelta(hours=24)
    if start >= end:
        raise ValidationError({"from": "Must be before to."})
    if end - start > analytics.max_range():
        raise ValidationError(
            {"from": f"The range spans at most {analytics.max_range().days} days."}
        )
    kind_name = params.get("kind", "")
    kinds = {name: int(kind) for kind, name in KIND_NAMES.items()}
    if kind_name and kind_name not in kinds:
        raise ValidationError({"kind": "telemetry or heartbeat."})
    return start, end, kinds.get(kind_name)


def aggregate_document(result: analytics.AggregateResult) -> dict[str, Any]:
    """The aggregate answer: columnar, every list aligned with ``buckets``."""
    query = result.query
    when = DateTimeField().to_representation
    return {
        "metric": query.metric.name,
        "kind": KIND_NAMES[query.metric.kind],
        "aggregates": list(query.aggregates),
        "bucket_seconds": int(query.bucket.total_seconds()),
        "group_by": query.group_by,
        "from": when(query.start),
        "to": when(query.end),
        "buckets": [when(bucket) for bucket in result.buckets],
        "series": [
            {"key": line.key, "label": line.label, "count": line.count, "values": line.values}
            for line in result.series
        ],
    }
