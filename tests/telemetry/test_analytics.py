"""Analytics aggregates against values computed here in Python from the same rows: every
aggregate, bucket edges, every grouping, empty buckets, filters, limits and bad input, and the
partitions PostgreSQL reads (EXPLAIN)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.http import Http404
from django.test.utils import CaptureQueriesContext

from apps.accounts.roles import Role
from apps.devices.models import Device
from apps.telemetry import analytics
from apps.telemetry.analytics import AGGREGATES, build_query

from ..factories import actor, make_member
from .analytics_support import HEARTBEAT, Fleet, Row, base_time, insert, make_fleet, reference

pytestmark = pytest.mark.django_db

ALL = ",".join(AGGREGATES)


@pytest.fixture
def fleet(tree) -> Fleet:
    return make_fleet(tree)


@pytest.fixture
def viewer(tree):
    return actor(make_member(tree["acme"], Role.VIEWER))


def at(minutes: float) -> datetime:
    return base_time() + timedelta(minutes=minutes)


@pytest.fixture
def rows(fleet) -> list[Row]:
    """Temperatures around the edges of 30-minute buckets from 01:00, heartbeat vitals, a
    boolean, text and samples without the metric; one foreign device."""
    d = fleet.devices
    found = [
        Row(d["a1"], at(-0.001), {"temperature": -99.0}, seq=1),  # before the range
        Row(d["a1"], at(0), {"temperature": 20.0}, seq=2),  # the first edge: inside
        Row(d["a1"], at(10), {"temperature": 21.5, "battery_pct": 10.0}, seq=3),
        Row(d["a1"], at(29.99), {"temperature": 22.25}, seq=4),
        Row(d["a1"], at(30), {"temperature": 19.75}, seq=5),  # an inner edge: next bucket
        Row(d["a1"], at(45), {"temperature": 23.0}, seq=6),
        Row(d["a1"], at(50), {"mode": "eco"}, seq=7),  # no temperature
        Row(d["a1"], at(55), {"temperature": "21"}, seq=8),  # text: not a value
        Row(d["a1"], at(119), {"temperature": 18.5}, seq=9),
        Row(d["a1"], at(150), {"temperature": 99.0}, seq=10),  # the end: outside
        Row(d["a2"], at(5), {"temperature": 10.0, "door_open": True}, seq=1),
        Row(d["a2"], at(5), {"temperature": 12.0, "door_open": False}, seq=2),  # same ts
        Row(d["a2"], at(7), {"door_open": True}, seq=3),
        Row(d["a2"], at(75), {"temperature": 11.25}, seq=4),
        Row(d["a2"], at(75), {"temperature": 11.75}, seq=4, idx=1),  # a batch's second item
        Row(d["r1"], at(20), {"temperature": 30.5}, seq=1),
        Row(d["r1"], at(70), {"temperature": 31.0}, seq=2),
        Row(d["r1"], at(80), {"temperature": 29.5}, seq=3),
        Row(d["r1"], at(85), {"temperature": 28.25}, seq=4),
        Row(d["r1"], at(89), {"temperature": 27.0}, boot=2, seq=1),
        Row(d["h1"], at(40), {"temperature": 15.0}, seq=1),
        Row(d["h1"], at(0), {"battery_pct": 80.0}, kind=HEARTBEAT, seq=1),
        Row(d["h1"], at(31), {"battery_pct": 79.5}, kind=HEARTBEAT, seq=2),
        Row(d["a1"], at(2), {"battery_pct": 50.0}, kind=HEARTBEAT, seq=1),
        Row(d["g1"], at(0), {"temperature": 100.0}, seq=1),  # another organization's
    ]
    insert(found)
    return found


START, END = 0, 150  # minutes from 01:00: five 30-minute buckets, the last one empty


def expected(
    rows: list[Row],
    key: str,
    series_of: Callable[[Device], list[str]],
    *,
    kind: int = 1,
    start: float = START,
    end: float = END,
    bucket: float = 30,
) -> dict[str, dict[str, list[Any]]]:
    """Per series, each aggregate per bucket, computed from the rows."""
    first = at(start) - timedelta(minutes=start % bucket)
    count = int(-(-(at(end) - first) // timedelta(minutes=bucket)))
    grouped: dict[str, dict[int, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        value = row.metrics.get(key)
        if row.kind != kind or isinstance(value, str) or value is None:
            continue
        if not at(start) <= row.ts < at(end) or row.device.organization.slug == "globex":
            continue
        index = (row.ts - first) // timedelta(minutes=bucket)
        for series in series_of(row.device):
            grouped[series][index].append(((row.ts, row.boot, row.seq, row.idx), float(value)))
    result = {}
    for series, buckets in grouped.items():
        result[series] = {
            name: [
                reference(buckets[i])[name] if buckets.get(i) else (0 if name == "count" else None)
                for i in range(count)
            ]
            for name in AGGREGATES
        }
    return result


def actual(result: analytics.AggregateResult) -> dict[str, dict[str, list[Any]]]:
    return {
        line.key: {"count": line.count, **{n: line.values[n] for n in line.values if n != "count"}}
        for line in result.series
    }


def run(viewer, **params: Any) -> analytics.AggregateResult:
    params.setdefault("start", at(START))
    params.setdefault("end", at(END))
    params.setdefault("bucket", "30m")
    params.setdefault("agg", ALL)
    return analytics.aggregate(actor=viewer, query=build_query(**params))


def test_every_aggregate_over_all_devices_matches_python(viewer, rows):
    result = run(viewer, metric="temperature")
    assert result.buckets == [at(0), at(30), at(60), at(90), at(120)]
    assert [(line.key, line.label) for line in result.series] == [("all", "All devices")]
    assert actual(result) == expected(rows, "temperature", lambda device: ["all"])
    # spelled out once, so the reference itself is checked: bucket 01:00 holds a1's 20.0,
    # 21.5, 22.25 (29.99 min), a2's 10.0 and 12.0, r1's 30.5; 01:30 a1's 19.75 (the edge) and
    # 23.0 and h1's 15.0 (a1's text "21" is no value); 03:00 nothing (03:30 is the end)
    line = result.series[0]
    assert line.count == [6, 3, 6, 1, 0]
    assert line.values["min"] == [10.0, 15.0, 11.25, 18.5, None]
    assert line.values["last"] == [22.25, 23.0, 27.0, 18.5, None]
    assert line.values["p50"] == [20.75, 19.75, 27.625, 18.5, None]


def test_an_empty_bucket_has_count_zero_and_null_values(viewer, rows):
    result = run(viewer, metric="temperature", agg="avg,max")
    line = result.series[0]
    assert (line.count[4], line.values["avg"][4], line.values["max"][4]) == (0, None, None)


def test_last_breaks_ties_by_message_then_batch_item(viewer, rows, fleet):
    result = run(viewer, metric="temperature", agg="last", group_by="device")
    by_device = {line.key: line.values["last"] for line in result.series}
    # a2 sent 10.0 then 12.0 at the same time (seq 1, 2); its batch item 1 beats item 0
    assert by_device[str(fleet.devices["a2"].pk)] == [12.0, None, 11.75, None, None]


def test_a_range_that_starts_inside_a_bucket_keeps_the_bucket_and_drops_earlier_samples(
    viewer, rows
):
    result = run(viewer, metric="temperature", start=at(10), end=at(60))
    assert result.buckets == [at(0), at(30)]
    assert actual(result) == expected(rows, "temperature", lambda d: ["all"], start=10, end=60)
    # before 01:10: a1's 20.0 and a2's two at 01:05; left: a1's 21.5, 22.25, r1's 30.5
    assert result.series[0].count == [3, 3]


def test_booleans_count_as_zero_and_one(viewer, rows):
    result = run(viewer, metric="door_open", agg="avg,sum,last")
    line = result.series[0]
    assert (line.count[0], line.values["sum"][0], line.values["last"][0]) == (3, 2.0, 1.0)
    assert line.values["avg"][0] == 2 / 3


def test_vitals_come_from_heartbeats_only(viewer, rows, fleet):
    result = run(viewer, metric="vitals.battery_pct", group_by="device")
    assert actual(result) == expected(
        rows, "battery_pct", lambda device: [str(device.pk)], kind=HEARTBEAT
    )
    assert {line.label for line in result.series} == {"SN-A1 (Lobby)", "SN-H1"}
    # the telemetry metric of the same name is another series of values
    telemetry = run(viewer, metric="battery_pct")
    assert telemetry.series[0].values["sum"] == [10.0, None, None, None, None]


@pytest.mark.parametrize(
    ("group_by", "labels"),
    [
        ("device", {"SN-A1 (Lobby)", "SN-A2", "SN-R1", "SN-H1"}),
        ("profile", {"Sensor", "Meter"}),
        ("organization", {"Acme", "Retail Co", "Hospital"}),
        ("group", {"Lobby", "EU"}),
        ("location", {"48°N 2°E", "Store 1", "34°S 71°W"}),
    ],
)
def test_each_grouping_matches_python(viewer, rows, fleet, tree, group_by, labels):
    d = fleet.devices
    keys: dict[str, Callable[[Device], list[str]]] = {
        "device": lambda device: [str(device.pk)],
        "profile": lambda device: [str(device.profile_version.profile_id)],
        "organization": lambda device: [str(device.organization_id)],
        "group": lambda device: [
            str(group.pk)
            for group, members in ((fleet.lobby, ("a1", "r1")), (fleet.eu, ("a1", "a2")))
            if device.pk in {d[name].pk for name in members}
        ],
        "location": lambda device: [
            {
                d["a1"].pk: "cell:48:2",
                d["a2"].pk: "cell:48:2",
                d["r1"].pk: f"site:{tree['store'].pk}",
                d["h1"].pk: "cell:-34:-71",
            }[device.pk]
        ],
    }
    result = run(viewer, metric="temperature", group_by=group_by)
    assert {line.label for line in result.series} == labels
    assert actual(result) == expected(rows, "temperature", keys[group_by])


@pytest.mark.parametrize(
    ("filters", "serials"),
    [
        ({"devices": ["a1", "a2"]}, {"SN-A1 (Lobby)", "SN-A2"}),
        ({"profile": "meter"}, {"SN-R1", "SN-H1"}),
        ({"group": "lobby"}, {"SN-A1 (Lobby)", "SN-R1"}),
        ({"group": "eu"}, {"SN-A1 (Lobby)", "SN-A2"}),
        ({"organization": "retail"}, {"SN-R1"}),
    ],
)
def test_filters_narrow_the_devices(viewer, rows, fleet, tree, filters, serials):
    params: dict[str, Any] = {}
    if "devices" in filters:
        params["devices"] = [fleet.devices[name].pk for name in filters["devices"]]
    if "profile" in filters:
        params["profile"] = fleet.meter.profile_id
    if "group" in filters:
        params["group"] = getattr(fleet, filters["group"]).pk
    if "organization" in filters:
        params["organization"] = tree[filters["organization"]].pk
    result = run(viewer, metric="temperature", group_by="device", **params)
    assert {line.label for line in result.series} == serials


@pytest.mark.parametrize("field", ["devices", "profile", "group", "organization"])
def test_a_filter_outside_the_scope_is_not_found(viewer, rows, fleet, tree, field):
    from apps.core.actors import SYSTEM
    from apps.devices import groups

    foreign = {
        "devices": [fleet.devices["g1"].pk],
        "profile": fleet.devices["g1"].profile_version.profile_id,
        "group": groups.group_create(actor=SYSTEM, organization=tree["globex"], name="G").pk,
        "organization": tree["globex"].pk,
    }[field]
    with pytest.raises(Http404):
        run(viewer, metric="temperature", **{field: foreign})


def test_an_unknown_metric_has_no_series(viewer, rows):
    assert run(viewer, metric="never_reported").series == []


def test_the_automatic_bucket_gives_at_most_240_buckets():
    cases = [(timedelta(hours=1), 15), (timedelta(hours=6), 120), (timedelta(days=1), 600)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert [analytics.auto_bucket(start, start + span).total_seconds() for span, _ in cases] == [
        float(seconds) for _, seconds in cases
    ]
    assert analytics.auto_bucket(start, start + timedelta(days=7)) == timedelta(hours=1)


METRIC = "A metric name (letters, digits, _), or vitals.<name> for a vital."
AGG = "One or more of count, min, max, avg, sum, last, p50, p90, p95, p99."
BUCKET = "auto, or a size such as 30s, 5m, 1h or 1d (<= 366d)."
GROUP_BY = "One of none, device, profile, group, organization, location."


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"metric": "bad-name"}, "metric", METRIC),
        ({"metric": "t", "agg": "median"}, "agg", AGG),
        ({"metric": "t", "agg": "avg,"}, "agg", AGG),
        ({"metric": "t", "bucket": "5x"}, "bucket", BUCKET),
        ({"metric": "t", "bucket": "0s"}, "bucket", BUCKET),
        ({"metric": "t", "bucket": "367d"}, "bucket", BUCKET),
        (
            {"metric": "t", "bucket": "1s"},
            "bucket",
            "9000 buckets; at most 2000: use a larger bucket.",
        ),
        ({"metric": "t", "group_by": "site"}, "group_by", GROUP_BY),
        ({"metric": "t", "end": at(-1)}, "from", "Must be before to."),
        (
            {"metric": "t", "start": at(0) - timedelta(days=31)},
            "from",
            "The range spans at most 30 days.",
        ),
    ],
)
def test_bad_input_names_the_parameter(params, field, message):
    params.setdefault("start", at(0))
    params.setdefault("end", at(150))
    with pytest.raises(ValidationError) as raised:
        build_query(**params)
    assert list(raised.value.message_dict) == [field]
    assert raised.value.message_dict == {field: [message]}


def test_too_many_series_is_refused(viewer, rows, settings):
    settings.TELEMETRY_ANALYTICS_MAX_SERIES = 3
    with pytest.raises(ValidationError) as raised:
        run(viewer, metric="temperature", group_by="device")
    assert raised.value.message_dict == {
        "group_by": [
            "4 series; at most 3 per query: narrow it with device, profile, group or organization."
        ]
    }


def test_too_many_devices_is_refused(viewer, rows, settings):
    settings.TELEMETRY_ANALYTICS_MAX_DEVICES = 3
    with pytest.raises(ValidationError) as raised:
        run(viewer, metric="temperature")
    assert raised.value.message_dict == {
        "device": [
            "4 devices; at most 3 per query: narrow it with device, profile, group or organization."
        ]
    }


# --- partitions --------------------------------------------------------------------------------


def _relations(plan: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            found.add(plan["Relation Name"])
        for value in plan.values():
            found |= _relations(value)
    elif isinstance(plan, list):
        for value in plan:
            found |= _relations(value)
    return found


@pytest.mark.parametrize("group_by", ["none", "profile", "group"])
def test_the_statement_reads_only_the_ranges_partitions_through_the_index(viewer, rows, group_by):
    today = base_time().replace(hour=0)
    start, end = today - timedelta(hours=2), today + timedelta(hours=2)  # yesterday and today
    with CaptureQueriesContext(connection) as captured:
        run(viewer, metric="temperature", start=start, end=end, group_by=group_by)
    statement = next(q["sql"] for q in captured.captured_queries if "telemetry_sample" in q["sql"])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'telemetry_sample'::regclass"
        )
        partitions = cursor.fetchone()[0]
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement)
        plan = cursor.fetchone()[0]
    names = {f"telemetry_sample_{day:%Y%m%d}" for day in (start, today)}
    assert partitions >= 8  # yesterday to a week ahead: the others are pruned
    assert _relations(plan) == names
    text = str(plan)
    assert "Seq Scan" not in text or "Index" in text
    assert all(f"{name}_pkey" in text for name in names)
