"""Prometheus metrics: the ingest workers' stats and a few platform counters.

``GET /metrics`` on the web app renders every live worker's stats (from Redis,
``ingest_stats.snapshot()``), the dead letters waiting for someone (``status = new``) by reason
and the devices by connectivity, in the Prometheus text format. It is protected by a bearer
token: ``Authorization: Bearer <METRICS_TOKEN>``. With no ``METRICS_TOKEN`` configured the
endpoint does not exist (404); a missing or wrong token is 401.

The two database counts are cached for ``DATABASE_COUNTS_SECONDS``, so scraping often (or from
several Prometheus servers) costs at most one pair of GROUP BY queries per interval.

``manage.py ingest --metrics-port N`` also serves one worker's own metrics (the same
``fleetops_ingest_*`` families) from the worker process, on 127.0.0.1:N.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import ingest_stats
from .choices import DeadLetterStatus

__all__ = ["PlatformCollector", "metrics_view", "serve_worker_metrics", "worker_families"]

DATABASE_COUNTS_SECONDS = 15
COUNTS_CACHE_KEY = "telemetry:metrics:database-counts"

# (document key, metric name, help, counter?) for the per-worker numbers
WORKER_NUMBERS: tuple[tuple[str, str, str, bool], ...] = (
    ("messages", "fleetops_ingest_messages", "MQTT messages committed", True),
    ("stored", "fleetops_ingest_stored", "Sample and event rows stored for the first time", True),
    ("duplicates", "fleetops_ingest_duplicates", "Messages already stored (redeliveries)", True),
    ("batches", "fleetops_ingest_batches", "Batches committed", True),
    ("uplinks", "fleetops_ingest_uplinks", "HTTPS uploads drained into the pipeline", True),
    ("database_errors", "fleetops_ingest_database_errors", "Failed batch attempts", True),
    (
        "messages_per_second",
        "fleetops_ingest_messages_per_second",
        "Messages per second over the last minute",
        False,
    ),
    ("batch_size_last", "fleetops_ingest_batch_size_last", "Messages in the last batch", False),
    ("batch_size_avg", "fleetops_ingest_batch_size_avg", "Average messages per batch", False),
)
WORKER_SECONDS: tuple[tuple[str, str, str], ...] = (
    ("latency_ms_last", "fleetops_ingest_batch_seconds_last", "Time to commit the last batch"),
    ("latency_ms_avg", "fleetops_ingest_batch_seconds_avg", "Average time to commit a batch"),
    ("lag_ms", "fleetops_ingest_lag_seconds", "Age of the last batch's oldest message at commit"),
)
LABELS = ["worker", "host"]


def worker_families(documents: list[dict[str, Any]]) -> Iterator[Metric]:
    """The ``fleetops_ingest_*`` families of these worker documents (one sample per worker)."""
    for key, name, documentation, counter in WORKER_NUMBERS:
        family: Metric = (
            CounterMetricFamily(name, documentation, labels=LABELS)
            if counter
            else GaugeMetricFamily(name, documentation, labels=LABELS)
        )
        for document in documents:
            family.add_metric([document["name"], document["host"]], document[key])  # type: ignore[attr-defined]
        yield family
    for key, name, documentation in WORKER_SECONDS:
        gauge = GaugeMetricFamily(name, documentation, labels=LABELS)
        for document in documents:
            gauge.add_metric([document["name"], document["host"]], document[key] / 1000)
        yield gauge
    yield from _worker_states(documents)


def _worker_states(documents: list[dict[str, Any]]) -> Iterator[Metric]:
    connected = GaugeMetricFamily(
        "fleetops_ingest_connected", "1 while the worker is connected to the broker", labels=LABELS
    )
    last = GaugeMetricFamily(
        "fleetops_ingest_last_batch_timestamp_seconds",
        "When the worker last committed a batch (Unix time)",
        labels=LABELS,
    )
    dead = CounterMetricFamily(
        "fleetops_ingest_dead_letters",
        "Messages the worker dead-lettered, by reason",
        labels=[*LABELS, "reason"],
    )
    for document in documents:
        labels = [document["name"], document["host"]]
        connected.add_metric(labels, 1 if document["connected"] else 0)
        if document["last_batch_at"]:
            last.add_metric(labels, datetime.fromisoformat(document["last_batch_at"]).timestamp())
        for reason, count in document["dead_letters_by_reason"].items():
            dead.add_metric([*labels, reason], count)
    yield from (connected, last, dead)


def database_counts() -> dict[str, dict[str, int]]:
    """New dead letters by reason (from the partial index on new rows) and devices by
    connectivity, cached briefly."""
    counts: dict[str, dict[str, int]] | None = cache.get(COUNTS_CACHE_KEY)
    if counts is None:
        from apps.devices.models import Device

        from .models import DeadLetter

        dead = DeadLetter.objects.filter(status=DeadLetterStatus.NEW).order_by()
        devices = Device.objects.order_by()
        counts = {
            "dead_letters": dict(
                dead.values_list("reason").annotate(total=Count("*")).values_list("reason", "total")
            ),
            "devices": dict(
                devices.values_list("connectivity")
                .annotate(total=Count("*"))
                .values_list("connectivity", "total")
            ),
        }
        cache.set(COUNTS_CACHE_KEY, counts, DATABASE_COUNTS_SECONDS)
    return counts


class PlatformCollector(Collector):
    """Every live worker (Redis) and the platform counters (PostgreSQL)."""

    def collect(self) -> Iterable[Metric]:
        from apps.devices.choices import Connectivity

        from .choices import DeadLetterReason

        documents = ingest_stats.workers()
        workers = GaugeMetricFamily("fleetops_ingest_workers", "Ingest workers reporting")
        workers.add_metric([], len(documents))
        yield workers
        yield from worker_families(documents)
        counts = database_counts()
        dead = GaugeMetricFamily(
            "fleetops_telemetry_dead_letters_waiting",
            "Dead letters neither replayed nor discarded, by reason",
            labels=["reason"],
        )
        for reason in DeadLetterReason.values:
            dead.add_metric([reason], counts["dead_letters"].get(reason, 0))
        yield dead
        devices = GaugeMetricFamily(
            "fleetops_devices", "Devices by connectivity", labels=["connectivity"]
        )
        for state in Connectivity.values:
            devices.add_metric([state], counts["devices"].get(state, 0))
        yield devices
        online = GaugeMetricFamily("fleetops_devices_online", "Devices online")
        online.add_metric([], counts["devices"].get(Connectivity.ONLINE.value, 0))
        yield online


class _WorkerCollector(Collector):
    def __init__(self, stats: ingest_stats.WorkerStats) -> None:
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        return worker_families([self.stats.document()])


def serve_worker_metrics(stats: ingest_stats.WorkerStats, *, port: int) -> None:
    """Serve one worker's metrics on 127.0.0.1:``port`` (a daemon thread)."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_WorkerCollector(stats))
    start_http_server(port, addr="127.0.0.1", registry=registry)


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """The Prometheus scrape endpoint (bearer token; 404 when no token is configured)."""
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("Metrics are not enabled.")
    if not _authorized(request, token):
        response = HttpResponse("Unauthorized.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PlatformCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
