"""``for_actor`` scaling and bulk transition throughput."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from django.db import connection


def p50s(functions: list[Callable[[], object]], repeat: int) -> list[float]:
    """Median time of each function, the calls interleaved so machine noise hits all alike.
    Slow calls (over 20 ms: the plan already failed) get 21 rounds, not ``repeat``."""
    samples: list[list[float]] = [[] for _ in functions]
    for function in functions:  # warm-up, and the slow-call check
        started = time.perf_counter()
        function()
        if time.perf_counter() - started > 0.02:
            repeat = min(repeat, 21)
    for _ in range(repeat):
        for function, found in zip(functions, samples, strict=True):
            started = time.perf_counter()
            function()
            found.append(time.perf_counter() - started)
    return [statistics.median(found) for found in samples]


def page(queryset: Any) -> Callable[[], list[Any]]:
    """Evaluate a fresh clone of ``queryset`` (no result cache) on every call."""

    def run() -> list[Any]:
        return list(queryset.all())

    return run


def explain(queryset: Any) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of a queryset, as text."""
    return str(queryset.explain(analyze=True, buffers=True))


def execution_ms(queryset: Any) -> float:
    """PostgreSQL's own execution time of the query (median of 5 EXPLAIN ANALYZE runs)."""
    times = []
    for _ in range(5):
        plan = str(queryset.explain(analyze=True))
        times.append(float(plan.rsplit("Execution Time: ", 1)[1].split(" ")[0]))
    return statistics.median(times)


def device_queryset(actor: Any, using: str, limit: int = 50) -> Any:
    from apps.devices.models import Device

    scoped = Device.objects.using(using).for_actor(actor, "view")
    return scoped.filter(state="active").order_by("-id")[:limit]


def group_queryset(actor: Any, using: str) -> Any:
    """The first 50 groups by name through ``for_actor`` (each grant branch takes its first 50
    grants by name from the grant table's listing index, see ``apps.core.scoping.GrantedIds``)."""
    from apps.devices.models import DeviceGroup

    scoped = DeviceGroup.objects.using(using).for_actor(actor, "view")
    return scoped.order_by("name", "id")[:50]


# --- bulk transition ---------------------------------------------------------------------------


def bulk_service() -> Any | None:
    """``apps.devices.services`` when it has ``device_bulk_transition`` and its job runner."""
    try:
        from apps.devices import services
    except ImportError:
        return None
    needed = ("device_bulk_transition", "bulk_transition_run", "_start_bulk")
    return services if all(hasattr(services, name) for name in needed) else None


def count_state(tag: str, state: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM devices_device WHERE tags @> ARRAY[%s]::varchar(64)[] "
            "AND state = %s",
            [tag, state],
        )
        return int(cursor.fetchone()[0])


def raw_transition(tag: str, source: str, target: str) -> tuple[int, float]:
    """One set-based UPDATE of the same rows; (rows, seconds)."""
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE devices_device SET state = %s, state_changed_at = now(), updated_at = now() "
            "WHERE tags @> ARRAY[%s]::varchar(64)[] AND state = %s",
            [target, tag, source],
        )
        rows = cursor.rowcount
    return rows, time.perf_counter() - started


def vacuum() -> None:
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE devices_device")


def bench_bulk(services: Any, *, actor: Any, organization: Any, tag: str) -> dict[str, Any]:
    """A raw UPDATE forward and back, then the service on the same rows: the job is created by
    ``device_bulk_transition`` (its Celery hand-off disabled) and run synchronously by the task's
    body, ``bulk_transition_run``. Counts the queries to show the work is set-based."""
    from django.test.utils import CaptureQueriesContext

    raw_rows, raw_seconds = raw_transition(tag, "active", "maintenance")
    raw_transition(tag, "maintenance", "active")
    vacuum()
    services._start_bulk = lambda job_id: None  # no Celery: the bench runs the task body itself
    selection = {"tags_all": [tag], "state": ["active"]}
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        job = services.device_bulk_transition(
            actor=actor,
            organization=organization,
            selection=selection,
            transition="enter_maintenance",
        )
        job = services.bulk_transition_run(job_id=job.pk)
        seconds = time.perf_counter() - started
    return {
        "raw_rows": raw_rows,
        "raw_seconds": raw_seconds,
        "service_seconds": seconds,
        "status": str(job.status),
        "succeeded": job.succeeded,
        "failed": job.failed,
        "moved": count_state(tag, "maintenance"),
        "queries": len(queries),
    }
