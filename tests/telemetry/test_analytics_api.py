"""The analytics API: the authorization matrix on every endpoint (aggregate, its CSV export, raw
samples, their CSV export, latest values), exact documents and CSV, bad input as the error
envelope, cursor pagination."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.roles import Role
from apps.telemetry.models import LatestValues
from tests.authz import API_KEY, SESSION, Call, Case, World, assert_authz_matrix, build_world, error

from ..factories import make_member
from .analytics_support import HEARTBEAT, Row, base_time, insert, make_version, register

pytestmark = pytest.mark.django_db


@pytest.fixture(params=[SESSION, API_KEY])
def world(request, tree) -> World:
    """Every role on acme and on its sibling globex, as sessions and then as API keys."""
    return build_world(tree, kind=request.param)


URL = "/api/v1/telemetry/"
VIEWERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.APPROVER, Role.TECHNICIAN, Role.VIEWER}
EXPORTERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR}


def at(minutes: float):
    return base_time() + timedelta(minutes=minutes)


def iso(minutes: float) -> str:
    return at(minutes).isoformat().replace("+00:00", "Z")


def sensor(world: Any, serial: str = "SN-API") -> Any:
    """A device of the home organization with four samples and a heartbeat."""
    device = register(make_version(world.home, f"Sensor {serial}"), world.home, serial)
    insert(
        [
            Row(device, at(0), {"temperature": 20.5, "mode": "eco"}, seq=1),
            Row(device, at(10), {"temperature": 21.5}, seq=2),
            Row(device, at(40), {"temperature": 23.0}, seq=3),
            Row(device, at(5), {"battery_pct": 80.0}, kind=HEARTBEAT, seq=1),
        ]
    )
    return device


def range_params(**extra: Any) -> dict[str, Any]:
    return {"from": iso(0), "to": iso(60), **extra}


def csv_rows(response: Any) -> list[list[str]]:
    assert response.streaming is True
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def aggregate_document(device: Any) -> dict[str, Any]:
    return {
        "metric": "temperature",
        "kind": "telemetry",
        "aggregates": ["avg", "max", "last"],
        "bucket_seconds": 1800,
        "group_by": "device",
        "from": iso(0),
        "to": iso(60),
        "buckets": [iso(0), iso(30)],
        "series": [
            {
                "key": str(device.pk),
                "label": device.serial,
                "count": [2, 1],
                "values": {"avg": [21.0, 23.0], "max": [21.5, 23.0], "last": [21.5, 23.0]},
            }
        ],
    }


def test_aggregate_matrix(world):
    def expect(attempt, response):
        assert response.json() == aggregate_document(attempt.target)

    assert_authz_matrix(
        world,
        Case(
            permission="telemetry.view",
            allowed=VIEWERS,
            setup=sensor,
            request=lambda a: Call(
                "get",
                f"{URL}aggregate/",
                range_params(
                    metric="temperature",
                    agg="avg,max,last",
                    bucket="30m",
                    group_by="device",
                    device=str(a.target.pk),
                ),
            ),
            expect=expect,
        ),
    )


def test_aggregate_export_matrix(world):
    def expect(attempt, response):
        assert response["Content-Type"] == "text/csv"
        assert response["Content-Disposition"].startswith(
            'attachment; filename="telemetry-aggregate-'
        )
        key = str(attempt.target.pk)
        assert csv_rows(response) == [
            ["bucket", "series", "label", "count", "avg", "p50"],
            [iso(0), key, "SN-API", "2", "21.0", "21.0"],
            [iso(30), key, "SN-API", "1", "23.0", "23.0"],
        ]

    assert_authz_matrix(
        world,
        Case(
            permission="telemetry.export",
            allowed=EXPORTERS,
            setup=sensor,
            request=lambda a: Call(
                "get",
                f"{URL}aggregate/export/",
                range_params(
                    metric="temperature",
                    agg="avg,p50",
                    bucket="30m",
                    group_by="device",
                    device=str(a.target.pk),
                ),
            ),
            expect=expect,
        ),
    )


def sample_document(device: Any, minutes: float, kind: str, seq: int, metrics: dict) -> dict:
    return {
        "device": str(device.pk),
        "ts": iso(minutes),
        "kind": kind,
        "boot": 1,
        "seq": seq,
        "idx": 0,
        "received_at": iso(minutes),
        "metrics": metrics,
        "extra": None,
    }


def test_samples_matrix(world):
    def expect(attempt, response):
        device = attempt.target
        assert response.json() == {
            "next": None,
            "previous": None,
            "results": [
                sample_document(device, 0, "telemetry", 1, {"temperature": 20.5, "mode": "eco"}),
                sample_document(device, 5, "heartbeat", 1, {"battery_pct": 80.0}),
                sample_document(device, 10, "telemetry", 2, {"temperature": 21.5}),
                sample_document(device, 40, "telemetry", 3, {"temperature": 23.0}),
            ],
        }

    assert_authz_matrix(
        world,
        Case(
            permission="telemetry.view",
            allowed=VIEWERS,
            setup=sensor,
            request=lambda a: Call("get", f"{URL}samples/", range_params(device=str(a.target.pk))),
            expect=expect,
        ),
    )


def test_samples_export_matrix(world):
    def expect(attempt, response):
        assert response["Content-Disposition"].startswith('attachment; filename="telemetry-SN-API-')
        assert csv_rows(response) == [
            [
                "ts",
                "kind",
                "boot",
                "seq",
                "idx",
                "received_at",
                "temperature",
                "vitals.battery_pct",
                "metrics",
            ],
            [
                iso(0),
                "telemetry",
                "1",
                "1",
                "0",
                iso(0),
                "20.5",
                "",
                '{"mode":"eco","temperature":20.5}',
            ],
            [iso(5), "heartbeat", "1", "1", "0", iso(5), "", "80.0", '{"battery_pct":80.0}'],
            [iso(10), "telemetry", "1", "2", "0", iso(10), "21.5", "", '{"temperature":21.5}'],
            [iso(40), "telemetry", "1", "3", "0", iso(40), "23.0", "", '{"temperature":23.0}'],
        ]

    assert_authz_matrix(
        world,
        Case(
            permission="telemetry.export",
            allowed=EXPORTERS,
            setup=sensor,
            request=lambda a: Call(
                "get",
                f"{URL}samples/export/",
                range_params(device=str(a.target.pk), metric="temperature,vitals.battery_pct"),
            ),
            expect=expect,
        ),
    )


def with_latest(world: Any) -> Any:
    device = sensor(world)
    LatestValues.objects.create(
        device=device,
        metrics={"temperature": 23.0},
        metrics_at=at(40),
        vitals={"battery_pct": 80.0},
        vitals_at=at(5),
        uptime_s=3600,
        boot=1,
        updated_at=at(41),
    )
    return device


def test_latest_matrix(world):
    def expect(attempt, response):
        assert response.json() == {
            "device": str(attempt.target.pk),
            "metrics": {"temperature": 23.0},
            "metrics_at": iso(40),
            "vitals": {"battery_pct": 80.0},
            "vitals_at": iso(5),
            "uptime_s": 3600,
            "boot": 1,
            "updated_at": iso(41),
        }

    assert_authz_matrix(
        world,
        Case(
            permission="telemetry.view",
            allowed=VIEWERS,
            setup=with_latest,
            request=lambda a: Call("get", f"{URL}latest/", {"device": str(a.target.pk)}),
            expect=expect,
        ),
    )


# --- bad input, pagination, defaults ---------------------------------------------------------


@pytest.fixture
def client(tree):
    api = APIClient()
    api.force_login(make_member(tree["acme"], Role.VIEWER))
    return api


@pytest.fixture
def device(tree):
    class Home:
        home = tree["acme"]

    return sensor(Home)


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        (
            {"metric": "a b"},
            {"metric": ["A metric name (letters, digits, _), or vitals.<name> for a vital."]},
        ),
        (
            {"metric": "t", "bucket": "1s"},
            {"bucket": ["3600 buckets; at most 2000: use a larger bucket."]},
        ),
        (
            {"metric": "t", "from": "yesterday"},
            {"from": ["An ISO 8601 date and time, e.g. 2026-11-30T10:00:00Z."]},
        ),
        ({"metric": "t", "from": iso(0), "to": iso(0)}, {"from": ["Must be before to."]}),
    ],
)
def test_bad_parameters_answer_the_envelope_naming_them(client, device, params, fields):
    query = {"from": iso(0), "to": iso(60), **params}
    response = client.get(f"{URL}aggregate/", query)
    assert response.status_code == 400
    assert error(response)["fields"] == fields
    assert error(response)["code"] == "invalid"


def test_a_range_longer_than_allowed_is_refused(client, device, settings):
    settings.TELEMETRY_ANALYTICS_MAX_RANGE_DAYS = 2
    response = client.get(
        f"{URL}aggregate/",
        {"metric": "t", "from": iso(-3 * 24 * 60), "to": iso(0), "bucket": "1d"},
    )
    assert response.status_code == 400
    assert error(response)["fields"] == {"from": ["The range spans at most 2 days."]}


@pytest.mark.parametrize("endpoint", ["aggregate/", "samples/", "latest/"])
def test_a_malformed_device_id_is_not_found(client, device, endpoint):
    response = client.get(f"{URL}{endpoint}", {"metric": "t", "device": "nope"})
    assert response.status_code == 404
    assert error(response)["code"] == "not_found"


def test_samples_need_a_device(client):
    response = client.get(f"{URL}samples/")
    assert response.status_code == 400
    assert error(response)["fields"] == {"device": ["This parameter is required."]}


def test_samples_page_with_a_cursor_and_filter_by_kind(client, device):
    first = client.get(f"{URL}samples/", range_params(device=str(device.pk), page_size=2))
    assert [row["seq"] for row in first.json()["results"]] == [1, 1]
    second = client.get(first.json()["next"])
    assert [(row["ts"], row["seq"]) for row in second.json()["results"]] == [
        (iso(10), 2),
        (iso(40), 3),
    ]
    assert second.json()["next"] is None
    heartbeats = client.get(f"{URL}samples/", range_params(device=str(device.pk), kind="heartbeat"))
    assert [row["kind"] for row in heartbeats.json()["results"]] == ["heartbeat"]


def test_latest_of_a_device_that_never_reported_is_empty(client, tree):
    class Home:
        home = tree["acme"]

    quiet = register(make_version(tree["acme"], "Quiet"), tree["acme"], "SN-Q")
    response = client.get(f"{URL}latest/", {"device": str(quiet.pk)})
    assert response.json() == {
        "device": str(quiet.pk),
        "metrics": {},
        "metrics_at": None,
        "vitals": {},
        "vitals_at": None,
        "uptime_s": None,
        "boot": None,
        "updated_at": None,
    }


def test_the_default_range_is_the_last_24_hours_with_automatic_buckets(client, device):
    response = client.get(f"{URL}aggregate/", {"metric": "temperature", "device": str(device.pk)})
    document = response.json()
    assert (document["bucket_seconds"], len(document["buckets"])) == (600, 145)
    assert (
        timezone.now() - timedelta(seconds=30)
        < timezone.datetime.fromisoformat(document["to"])
        <= timezone.now()
    )
