"""Analytics over stored telemetry: time-bucketed aggregates of any normalized metric.

A query names one metric (``temperature_c`` for telemetry, ``vitals.battery_pct`` for a
heartbeat vital), one or more aggregates, a range ``[start, end)``, a bucket size and a
grouping (none, device, profile, group, organization or location). The answer is columnar:
one list of bucket starts and, per series, one list per aggregate aligned with it (what a chart
library draws without reshaping). Every bucket of the range is listed; an empty one has count 0
and null values. Series appear only when they have data in the range.

How a query stays cheap (docs/analytics.md): the devices are resolved first, through the
actor's scope (``analytics_series``), into a literal list of ids (at most ``MAX_DEVICES``) with
each device's series key; the sample statement then filters on ``device_id = ANY(ids)`` and on
``ts`` bounded by the range, both literals, so PostgreSQL prunes every partition outside the
range at plan time and reads the others through their primary-key index
``(device_id, ts, ...)``. It never scans the whole table.

Values: JSON numbers, and booleans as 0 / 1 (so ``avg`` of a boolean is the share of true);
text values and samples without the metric are not counted. An unknown metric name (one no
device reported) is not an error: it has no data, so the answer has no series. A malformed
name, aggregate, bucket or range is a 400 naming the parameter.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection

from apps.core.actors import Actor

from .analytics_series import GROUP_BY, SeriesMap, series_map
from .choices import SampleKind

__all__ = [
    "AGGREGATES",
    "GROUP_BY",
    "AggregateQuery",
    "AggregateResult",
    "Metric",
    "Series",
    "aggregate",
    "aggregate_csv",
    "auto_bucket",
    "build_query",
    "parse_bucket",
    "parse_metric",
]

AGGREGATES = ("count", "min", "max", "avg", "sum", "last", "p50", "p90", "p95", "p99")
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
METRIC_NAME = re.compile(r"^(vitals\.)?([A-Za-z_][A-Za-z0-9_]{0,63})$")
BUCKET_TEXT = re.compile(r"^(\d{1,7})(s|m|h|d)$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
ORIGIN = datetime(1970, 1, 1, tzinfo=UTC)  # buckets start on whole minutes, hours, days (UTC)
# Bucket sizes ``bucket=auto`` picks from: the smallest giving at most AUTO_BUCKETS buckets.
NICE_SECONDS = (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)
NICE_BUCKETS = tuple(
    timedelta(seconds=seconds) for seconds in (*NICE_SECONDS, 43200, 86400, 172800, 604800)
)
AUTO_BUCKETS = 240


def max_buckets() -> int:
    return int(getattr(settings, "TELEMETRY_ANALYTICS_MAX_BUCKETS", 2000))


def max_range() -> timedelta:
    """The longest range a query may span: the setting, else the longest retention (older
    data is gone anyway; plans will carry it once billing lands)."""
    days = getattr(settings, "TELEMETRY_ANALYTICS_MAX_RANGE_DAYS", None)
    if days is None:
        overrides = getattr(settings, "TELEMETRY_RETENTION_DAYS_BY_ORGANIZATION", {})
        days = max([getattr(settings, "TELEMETRY_RETENTION_DAYS", 30), *overrides.values()])
    return timedelta(days=int(days))


@dataclass(frozen=True)
class Metric:
    """A metric as stored: the sample kind it lives in and its key in ``metrics``."""

    name: str  # as the caller wrote it: "temperature_c" or "vitals.battery_pct"
    kind: int  # SampleKind
    key: str


@dataclass(frozen=True)
class AggregateQuery:
    metric: Metric
    aggregates: tuple[str, ...]
    start: datetime
    end: datetime
    bucket: timedelta
    group_by: str = "none"
    devices: tuple[uuid.UUID, ...] = ()
    profile: uuid.UUID | None = None
    group: uuid.UUID | None = None
    organization: uuid.UUID | None = None

    @property
    def first_bucket(self) -> datetime:
        """The start of the bucket holding ``start`` (PostgreSQL's ``date_bin``)."""
        return ORIGIN + ((self.start - ORIGIN) // self.bucket) * self.bucket

    def bucket_starts(self) -> list[datetime]:
        count = math.ceil((self.end - self.first_bucket) / self.bucket)
        return [self.first_bucket + index * self.bucket for index in range(count)]


@dataclass
class Series:
    key: str
    label: str
    count: list[int]
    # per aggregate, one value per bucket (``count``, when asked for, is ``count`` itself)
    values: dict[str, list[Any]] = field(default_factory=dict)


@dataclass
class AggregateResult:
    query: AggregateQuery
    buckets: list[datetime]
    series: list[Series]


# --- parsing -----------------------------------------------------------------------------------


def parse_metric(text: str) -> Metric:
    match = METRIC_NAME.match(text or "")
    if match is None:
        raise ValidationError(
            {"metric": "A metric name (letters, digits, _), or vitals.<name> for a vital."}
        )
    kind = SampleKind.HEARTBEAT if match.group(1) else SampleKind.TELEMETRY
    return Metric(name=text, kind=int(kind), key=match.group(2))


def parse_aggregates(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in (text or "avg").split(",")))
    unknown = [name for name in names if name not in AGGREGATES]
    if unknown or not names:
        raise ValidationError({"agg": f"One or more of {', '.join(AGGREGATES)}."})
    return names


def parse_bucket(text: str) -> timedelta | None:
    """``30s``, ``5m``, ``1h``, ``1d`` or a number of seconds; None for ``auto`` (or empty)."""
    text = (text or "auto").strip()
    if text == "auto":
        return None
    match = BUCKET_TEXT.match(text) or BUCKET_TEXT.match(f"{text}s")
    seconds = int(match.group(1)) * UNIT_SECONDS[match.group(2)] if match else 0
    if not 1 <= seconds <= 366 * 86400:
        raise ValidationError({"bucket": "auto, or a size such as 30s, 5m, 1h or 1d (<= 366d)."})
    return timedelta(seconds=seconds)


def auto_bucket(start: datetime, end: datetime) -> timedelta:
    """The smallest nice bucket that gives at most AUTO_BUCKETS buckets over the range."""
    for size in NICE_BUCKETS:
        if (end - start) / size <= AUTO_BUCKETS:
            return size
    return NICE_BUCKETS[-1]


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    end = end or datetime.now(tz=UTC)
    start = start or end - timedelta(hours=24)
    if start >= end:
        raise ValidationError({"from": "Must be before to."})
    if end - start > max_range():
        raise ValidationError({"from": f"The range spans at most {max_range().days} days."})
    return start, end


def build_query(
    *,
    metric: str,
    agg: str = "avg",
    bucket: str = "auto",
    start: datetime | None = None,
    end: datetime | None = None,
    group_by: str = "none",
    devices: Sequence[uuid.UUID] = (),
    profile: uuid.UUID | None = None,
    group: uuid.UUID | None = None,
    organization: uuid.UUID | None = None,
) -> AggregateQuery:
    """A validated query; ValidationError names the bad parameter (the API's 400 envelope)."""
    start, end = _range(start, end)
    if group_by not in GROUP_BY:
        raise ValidationError({"group_by": f"One of {', '.join(GROUP_BY)}."})
    query = AggregateQuery(
        metric=parse_metric(metric),
        aggregates=parse_aggregates(agg),
        start=start,
        end=end,
        bucket=parse_bucket(bucket) or auto_bucket(start, end),
        group_by=group_by,
        devices=tuple(dict.fromkeys(devices)),
        profile=profile,
        group=group,
        organization=organization,
    )
    buckets = math.ceil((query.end - query.first_bucket) / query.bucket)
    if buckets > max_buckets():
        raise ValidationError(
            {"bucket": f"{buckets} buckets; at most {max_buckets()}: use a larger bucket."}
        )
    return query


# --- the statement -----------------------------------------------------------------------------

# Every aggregate over ``v`` (the value) of the samples of one bucket and series.
AGGREGATE_SQL = {
    "count": "count(v)",
    "min": "min(v)",
    "max": "max(v)",
    "avg": "avg(v)",
    "sum": "sum(v)",
    # the newest sample of the bucket (ties: the later message, then the later batch item)
    "last": "(array_agg(v ORDER BY ts DESC, boot DESC, seq DESC, idx DESC))[1]",
    **{
        name: f"percentile_cont({fraction}) WITHIN GROUP (ORDER BY v)"
        for name, fraction in PERCENTILES.items()
    },
}

# Numbers as float8, booleans as 0 / 1, anything else (text, absent) NULL.
VALUE_SQL = """CASE jsonb_typeof(s.metrics -> %(key)s::text)
    WHEN 'number' THEN (s.metrics ->> %(key)s::text)::float8
    WHEN 'boolean' THEN CASE WHEN (s.metrics -> %(key)s::text)::boolean THEN 1.0 ELSE 0.0 END
END"""


def statement(query: AggregateQuery, series: SeriesMap) -> tuple[str, dict[str, Any]]:
    """The aggregate statement and its parameters. ``ts`` is bounded by the range and
    ``device_id`` by a literal id list: pruned partitions, primary-key index reads."""
    columns = ", ".join(AGGREGATE_SQL[name] for name in ("count", *query.aggregates))
    # S608: the columns come from AGGREGATE_SQL (validated names), every value is bound.
    sql = f"""
SELECT date_bin(%(stride)s::interval, x.ts, %(origin)s::timestamptz) AS bucket, x.series,
       {columns}
FROM (
    SELECT s.ts, s.boot, s.seq, s.idx, k.series, {VALUE_SQL} AS v
    FROM telemetry_sample s
    JOIN unnest(%(pair_ids)s::uuid[], %(pair_keys)s::text[]) AS k(device_id, series)
      ON k.device_id = s.device_id
    WHERE s.device_id = ANY(%(device_ids)s::uuid[])
      AND s.kind = %(kind)s AND s.ts >= %(start)s AND s.ts < %(end)s
) x
WHERE x.v IS NOT NULL
GROUP BY 1, 2"""  # noqa: S608
    params = {
        "stride": query.bucket,
        "origin": ORIGIN,
        "key": query.metric.key,
        "pair_ids": [device_id for device_id, _ in series.pairs],
        "pair_keys": [key for _, key in series.pairs],
        "device_ids": series.device_ids,
        "kind": query.metric.kind,
        "start": query.start,
        "end": query.end,
    }
    return sql, params


def _rows(query: AggregateQuery, series: SeriesMap) -> list[tuple[Any, ...]]:
    if not series.pairs:
        return []
    sql, params = statement(query, series)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def aggregate(*, actor: Actor, query: AggregateQuery) -> AggregateResult:
    """The query's aggregates over the telemetry of the devices ``actor`` may read.

    Two statements: the scoped devices with their series keys, then the samples. A device,
    profile, group or organization filter outside the actor's scope is ``Http404``."""
    series = series_map(actor=actor, query=query)
    buckets = query.bucket_starts()
    position = {start: index for index, start in enumerate(buckets)}
    found: dict[str, Series] = {}
    for bucket, key, count, *values in _rows(query, series):
        line = found.get(key)
        if line is None:
            line = found[key] = _empty_series(key, series.labels.get(key, key), query, buckets)
        index = position[bucket]
        line.count[index] = count
        for name, value in zip(query.aggregates, values, strict=True):
            if name != "count":
                line.values[name][index] = value
    ordered = sorted(found.values(), key=lambda line: (line.label.lower(), line.key))
    return AggregateResult(query=query, buckets=buckets, series=ordered)


def _empty_series(key: str, label: str, query: AggregateQuery, buckets: list[datetime]) -> Series:
    count = [0] * len(buckets)
    values: dict[str, list[Any]] = {
        name: count if name == "count" else [None] * len(buckets) for name in query.aggregates
    }
    return Series(key=key, label=label, count=count, values=values)


# --- CSV ---------------------------------------------------------------------------------------


def aggregate_csv(result: AggregateResult) -> Iterator[list[str]]:
    """The result as CSV rows (header first): one row per series and bucket, every bucket of
    the range listed (an empty one has count 0 and empty values)."""
    names = [name for name in result.query.aggregates if name != "count"]
    yield ["bucket", "series", "label", "count", *names]
    for line in result.series:
        for index, bucket in enumerate(result.buckets):
            values = [line.values[name][index] for name in names]
            yield [
                bucket.isoformat().replace("+00:00", "Z"),
                line.key,
                line.label,
                str(line.count[index]),
                *("" if value is None else repr(float(value)) for value in values),
            ]
