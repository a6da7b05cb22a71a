"""The ingest workers' stats (``ingest_stats``) and the operations page that shows them: who may
open it, who sees the per-worker table, and the dead letters by reason in the actor's scope."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from django.urls import reverse

from apps.accounts.roles import Role
from apps.telemetry import ingest_stats
from apps.telemetry.ingest_stats import WorkerStats
from apps.telemetry.types import BatchResult
from tests.factories import UserFactory, make_member

from .ingest_support import clear_worker_stats
from .test_deadletters_api import letter

pytestmark = pytest.mark.django_db

URL = "/operations/"


@pytest.fixture(autouse=True)
def _no_workers() -> Iterator[None]:
    clear_worker_stats()
    yield
    clear_worker_stats()


def publish(name: str, sizes: list[int], *, lag: float = 0.1, **by_reason: int) -> WorkerStats:
    stats = WorkerStats(name)
    stats.connected, stats.state = True, "running"
    for index, size in enumerate(sizes):
        dead = by_reason if index == 0 else {}
        result = BatchResult(
            received=size,
            stored=size - sum(dead.values()),
            duplicates=0,
            dead_lettered=sum(dead.values()),
            by_reason=dict(dead),
        )
        stats.record_batch(size=size, result=result, latency=0.01 * (index + 1), lag=lag)
    stats.publish(force=True)
    return stats


def test_the_snapshot_sums_the_live_workers():
    publish("a", [100, 50], lag=0.25, schema=3, malformed_json=1)
    publish("b", [30], lag=0.75, schema=2)

    snapshot = ingest_stats.snapshot()
    assert [worker["name"] for worker in snapshot["workers"]] == ["a", "b"]
    first = snapshot["workers"][0]
    assert (first["messages"], first["batches"], first["batch_size_last"]) == (150, 2, 50)
    assert (first["batch_size_avg"], first["latency_ms_last"], first["latency_ms_avg"]) == (
        75.0,
        20.0,
        15.0,
    )
    assert first["dead_letters_by_reason"] == {"malformed_json": 1, "schema": 3}
    totals = snapshot["totals"]
    assert {key: totals[key] for key in totals if key not in ("messages_per_second",)} == {
        "workers": 2,
        "messages": 180,
        "stored": 174,
        "duplicates": 0,
        "dead_letters": 6,
        "dead_letters_by_reason": {"malformed_json": 1, "schema": 5},
        "batches": 3,
        "batch_size_last": 50,
        "batch_size_avg": 60.0,
        "latency_ms_avg": 13.3,
        "lag_ms": 750.0,
        "last_batch_at": max(worker["last_batch_at"] for worker in snapshot["workers"]),
        "uplinks": 0,
    }
    assert totals["messages_per_second"] == round(
        first["messages_per_second"] + snapshot["workers"][1]["messages_per_second"], 2
    )


def test_the_rate_is_over_the_last_minute():
    stats = WorkerStats("rate")
    now = time.time()
    stats.started_at = now - 300
    stats.per_second.extend([[int(now) - 90, 6000], [int(now) - 30, 600], [int(now) - 1, 60]])
    assert stats.rate(now) == 11.0  # (600 + 60) / 60: the batch 90 s ago is out of the window
    fresh = WorkerStats("fresh")
    fresh.started_at = 1000.5
    fresh.per_second.append([1000, 12])  # in the same second as the start, before it
    assert fresh.rate(1000.9) == 12.0  # over one second at least


def test_a_worker_that_stopped_reporting_drops_out_of_the_snapshot():
    publish("gone", [10])
    client = ingest_stats.redis_client()
    client.delete(ingest_stats._worker_key("gone"))  # what the TTL does to a killed worker
    assert ingest_stats.snapshot()["workers"] == []
    client.zadd(ingest_stats._index_key(), {"old": time.time() - 120})
    assert ingest_stats.snapshot()["totals"]["workers"] == 0
    assert client.zscore(ingest_stats._index_key(), "old") is None  # pruned


# --- the page ------------------------------------------------------------------------------------


def test_anonymous_visitors_go_to_the_login_page(client, db):
    response = client.get(URL)
    assert (response.status_code, response.url) == (302, f"/accounts/login/?next={URL}")


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.VIEWER, Role.APPROVER, Role.BILLING])
def test_roles_that_do_not_run_operations_are_refused(client, tree, role):
    client.force_login(make_member(tree["acme"], role))
    assert client.get(URL).status_code == 403
    page = client.get(reverse("portal:dashboard", kwargs={"organization_id": tree["acme"].pk}))
    assert URL not in page.content.decode()


def test_an_owner_sees_the_rates_and_their_own_dead_letters_but_not_the_workers(client, tree):
    publish("ingest-host-0", [40], schema=1)
    letter(tree["acme"], reason="schema")
    letter(tree["retail"], reason="schema")
    letter(tree["acme"], reason="device_state")
    letter(tree["globex"], reason="oversized")  # another manufacturer's
    client.force_login(make_member(tree["acme"], Role.OWNER))

    response = client.get(URL)
    html = response.content.decode()
    assert response.status_code == 200
    assert response.context["totals"]["messages"] == 40
    assert response.context["dead_letters"] == [
        {
            "value": "device_state",
            "label": "Device decommissioned, suspended or not in service",
            "total": 1,
        },
        {"value": "schema", "label": "Does not match the profile's telemetry schema", "total": 2},
    ]
    assert 'id="ingest-worker-table"' not in html
    assert "ingest-host-0" not in html
    dashboard = reverse("portal:dashboard", kwargs={"organization_id": tree["acme"].pk})
    assert f'href="{URL}"' in client.get(dashboard).content.decode()  # in the navigation


@pytest.mark.parametrize("who", ["platform admin", "superuser"])
def test_those_who_run_the_platform_see_every_worker(client, tree, who):
    publish("ingest-host-0", [40])
    publish("ingest-host-1", [10])
    if who == "superuser":
        user = UserFactory(email="staff@platform.test", is_staff=True, is_superuser=True)
    else:
        user = make_member(tree["platform"], Role.ADMIN)
    client.force_login(user)

    response = client.get(URL)
    html = response.content.decode()
    assert [worker["name"] for worker in response.context["workers"]] == [
        "ingest-host-0",
        "ingest-host-1",
    ]
    assert 'data-worker="ingest-host-1"' in html
    partial = client.get(URL, HTTP_HX_REQUEST="true")
    assert partial.content.decode().lstrip().startswith('<section class="card" id="ingest-panel"')


def test_with_no_worker_reporting_the_page_says_so(client, tree):
    client.force_login(make_member(tree["acme"], Role.ADMIN))
    html = client.get(URL).content.decode()
    assert 'id="ingest-no-workers"' in html
    assert 'id="ingest-no-dead-letters"' in html
