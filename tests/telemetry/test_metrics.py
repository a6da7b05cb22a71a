"""``GET /metrics``: Prometheus text with every live worker's stats (from Redis) and the platform
counters (from PostgreSQL), behind a bearer token; 404 when no token is configured."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from prometheus_client.parser import text_string_to_metric_families

from apps.telemetry import metrics
from apps.telemetry.ingest_stats import WorkerStats
from apps.telemetry.models import DeadLetter
from apps.telemetry.types import BatchResult
from tests.broker_support import free_port

from .conftest import make_device
from .ingest_support import clear_worker_stats

pytestmark = pytest.mark.django_db

TOKEN = "s3cret-metrics-token"
HOST = socket.gethostname()


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    clear_worker_stats()
    cache.delete(metrics.COUNTS_CACHE_KEY)
    yield
    clear_worker_stats()
    cache.delete(metrics.COUNTS_CACHE_KEY)


@pytest.fixture
def token(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def worker(name: str, size: int, *, by_reason: dict[str, int] | None = None) -> WorkerStats:
    stats = WorkerStats(name)
    stats.connected, stats.state = True, "running"
    dead = sum((by_reason or {}).values())
    result = BatchResult(
        received=size, stored=size - dead, dead_lettered=dead, by_reason=by_reason or {}
    )
    stats.record_batch(size=size, result=result, latency=0.25, lag=0.5)
    stats.publish(force=True)
    return stats


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(client: Any, token: str | None = TOKEN, scheme: str = "Bearer") -> Any:
    headers = {"HTTP_AUTHORIZATION": f"{scheme} {token}"} if token is not None else {}
    return client.get("/metrics", **headers)


def test_without_a_configured_token_there_is_no_endpoint(client, settings):
    settings.METRICS_TOKEN = ""
    assert scrape(client).status_code == 404
    assert scrape(client, token=None).status_code == 404


def test_a_missing_or_wrong_token_is_401(client, token):
    for response in (
        scrape(client, token=None),
        scrape(client, token="wrong"),
        scrape(client, token="s3cret-metrics-toke"),
        scrape(client, scheme="Basic"),
        scrape(client, token="jalapeño"),
    ):
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert client.get(f"/metrics?token={TOKEN}").status_code == 401  # header only
    assert client.post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


def test_it_renders_the_workers_and_the_platform_counters(client, token, tree, telemetry_version):
    worker("ingest-a", 100, by_reason={"schema": 2})
    worker("ingest-b", 40)
    online = make_device(telemetry_version, tree["acme"])
    online.connectivity = "online"
    online.save()
    make_device(telemetry_version, tree["retail"])
    for reason in ("schema", "schema", "malformed_json"):
        DeadLetter.objects.create(topic="devices/x/telemetry", reason=reason, payload=b"x")
    DeadLetter.objects.create(
        topic="devices/x/telemetry", reason="oversized", payload=b"x", status="discarded"
    )

    response = scrape(client)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    found = samples(response.content.decode())
    a = (("host", HOST), ("worker", "ingest-a"))
    b = (("host", HOST), ("worker", "ingest-b"))
    assert found[("fleetops_ingest_workers", ())] == 2
    assert found[("fleetops_ingest_messages_total", a)] == 100
    assert found[("fleetops_ingest_messages_total", b)] == 40
    assert found[("fleetops_ingest_stored_total", a)] == 98
    assert found[("fleetops_ingest_batch_size_last", b)] == 40
    assert found[("fleetops_ingest_batch_seconds_avg", a)] == 0.25
    assert found[("fleetops_ingest_lag_seconds", a)] == 0.5
    assert found[("fleetops_ingest_connected", b)] == 1
    assert (
        found[("fleetops_ingest_dead_letters_total", tuple(sorted((*a, ("reason", "schema")))))]
        == 2
    )
    assert found[("fleetops_ingest_messages_per_second", a)] > 0
    assert found[("fleetops_telemetry_dead_letters_waiting", (("reason", "schema"),))] == 2
    assert found[("fleetops_telemetry_dead_letters_waiting", (("reason", "malformed_json"),))] == 1
    assert found[("fleetops_telemetry_dead_letters_waiting", (("reason", "oversized"),))] == 0
    assert found[("fleetops_devices_online", ())] == 1
    assert found[("fleetops_devices", (("connectivity", "unknown"),))] == 1


def test_the_database_counts_are_cached_briefly(client, token, django_assert_num_queries):
    scrape(client)
    DeadLetter.objects.create(topic="devices/x/telemetry", reason="schema", payload=b"x")
    with django_assert_num_queries(0):
        found = samples(scrape(client).content.decode())
    assert found[("fleetops_telemetry_dead_letters_waiting", (("reason", "schema"),))] == 0


def test_a_worker_serves_its_own_metrics():
    stats = worker("own", 7)
    port = free_port()
    metrics.serve_worker_metrics(stats, port=port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        found = samples(answer.read().decode())
    assert found[("fleetops_ingest_messages_total", (("host", HOST), ("worker", "own")))] == 7
