"""Benchmark: the fleet registry at fleet size (issue 3, Performance).

Builds 100 organizations (4 manufacturers, 95 customers) with profiles, device groups and
devices loaded with COPY in a dedicated database (``fleetops_bench_registry``), plus a copy of
the same tree with 1,000 devices (``fleetops_bench_registry_1k``), then measures, in one run:

1. the device list API (first page and a page 10,000 rows deep, following the cursor) against a
   plain Django view serving the same rows from one raw keyset query (p50/p99, interleaved);
2. ``for_actor`` p50 at 1,000 devices vs the bench scale, and for device groups with 0 vs 1,000
   guardian grants;
3. a bulk transition (active -> maintenance) through ``device_bulk_transition`` vs one raw
   UPDATE of the same rows.

Prints every ratio and exits non-zero when a goal is missed or a measured piece is missing.

Usage: python bench/registry.py [--scale quick|full] [--devices N] [--only PART ...]
(``make bench`` runs every part; ``--only scoping`` measures part 2 alone, and counts only its
goals.)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

SCALES = {
    "quick": {"devices": 100_000, "bulk": 20_000, "samples": 500, "repeat": 200},
    "full": {"devices": 1_000_000, "bulk": 100_000, "samples": 1_000, "repeat": 300},
}
SMALL_FLEET = 1_000
GRANTS = 1_000
DEPTH_PAGES = 200  # 200 pages of 50: a page 10,000 rows deep
API_QUERY = "state=active&tags=eu"
DATABASE = "fleetops_bench_registry"
SMALL = "small"  # the connection alias of the 1k-device copy
QUERIES_PER_CHUNK = 25.0  # set-based: a fixed number of queries per chunk, never one per row
PARTS = ("scoping", "api", "bulk")
GOALS: list[tuple[str, float | None, float]] = []  # (name, measured ratio or None, limit)


def goal(name: str, value: float | None, limit: float) -> None:
    GOALS.append((name, value, limit))
    shown = "NOT MEASURED" if value is None else f"{value:.2f}"
    verdict = "ok" if value is not None and value <= limit else "MISSED"
    print(f"  {name}: {shown} (goal <= {limit}) {verdict}", flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def setup() -> Any:
    from bench import registry_data as data

    base, _ = data.admin_url()
    data.recreate_database(DATABASE)
    os.environ["DATABASE_URL"] = f"{base}/{DATABASE}"
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    settings.DEBUG = False  # no query log
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    data.add_alias(SMALL, f"{DATABASE}_1k")
    world = data.build_world()
    connection.close()  # so the database can be a template
    data.recreate_database(f"{DATABASE}_1k", template=DATABASE)
    return world


def scoping(world: Any, repeat: int) -> None:
    """The same actor and query on the 1k fleet and the big one, timed interleaved."""
    from apps.accounts.actors import actor_for_user
    from bench import registry_data as data
    from bench import registry_scale as scale

    print("for_actor scaling (devices: active, -id, first page):", flush=True)
    for role in ("manufacturer", "customer", "newcomer"):
        actor = actor_for_user(world.users[role])
        rows = len(scale.device_queryset(actor, SMALL))  # the page both fleets fill (<= 50)
        small, big = (scale.device_queryset(actor, using, rows) for using in (SMALL, "default"))
        times = scale.p50s([scale.page(small), scale.page(big)], repeat)
        database = [scale.execution_ms(query) for query in (small, big)]
        print(
            f"  {role} owner, first {rows} rows: p50 {ms(times[0])} at 1k -> {ms(times[1])} at "
            f"bench scale; PostgreSQL execution {database[0]:.2f} ms -> {database[1]:.2f} ms"
        )
        goal(f"device for_actor p50 ratio ({role} owner)", times[1] / times[0], 1.2)
        if times[1] / times[0] > 1.2:
            print(scale.explain(big))
    user = world.users["customer"]
    actor = actor_for_user(user)
    grants = data.grant_groups(user, GRANTS)  # in the big database only; groups are identical
    none, some = (scale.group_queryset(actor, using) for using in (SMALL, "default"))
    times = scale.p50s([scale.page(none), scale.page(some)], repeat)
    database = [scale.execution_ms(query) for query in (none, some)]
    print(
        f"  device groups (customer owner, first 50 by name): p50 {ms(times[0])} with 0 grants "
        f"-> {ms(times[1])} with {grants} grants; PostgreSQL execution {database[0]:.2f} ms -> "
        f"{database[1]:.2f} ms"
    )
    goal("devicegroup for_actor p50 ratio (1,000 grants / 0)", times[1] / times[0], 1.2)
    if times[1] / times[0] > 1.2:
        print(scale.explain(some))


def api(world: Any, samples: int) -> dict[str, Any]:
    from django.conf import settings
    from django.test import Client

    settings.ROOT_URLCONF = "bench.registry_api"
    from bench import registry_api

    client = Client()
    client.force_login(world.users["manufacturer"])
    print(f"device list API ({API_QUERY}, manufacturer owner, {samples} samples each):")
    found = registry_api.bench_list(
        client,
        world.manufacturers[0],
        api_query=API_QUERY,
        samples=samples,
        depth_pages=DEPTH_PAGES,
    )
    for name in ("raw_first", "raw_deep", "api_first", "api_deep"):
        if name in found:
            print(f"  {name}: p50 {ms(found[name]['p50'])} p99 {ms(found[name]['p99'])}")
    if not found["api"]:
        print(f"  GET /api/v1/devices/ answered {found['api_status']}: the API is not there yet")
        goal("API deep p99 / first p99", None, 1.5)
        goal("API first p99 / raw baseline p99", None, 2.0)
        return found
    goal("API deep p99 / first p99", found["api_deep"]["p99"] / found["api_first"]["p99"], 1.5)
    goal(
        "API first p99 / raw baseline p99",
        found["api_first"]["p99"] / found["raw_first"]["p99"],
        2.0,
    )
    return found


def bulk(world: Any, expected: int) -> dict[str, Any]:
    from apps.accounts.actors import actor_for_user
    from bench import registry_data as data
    from bench import registry_scale as scale

    print(f"bulk transition of {expected:,} devices (enter_maintenance: active -> maintenance):")
    services = scale.bulk_service()
    if services is None:
        print("  apps.devices.services.device_bulk_transition does not exist yet")
        goal("bulk transition: queries per 10,000 devices", None, QUERIES_PER_CHUNK)
        return {}
    found = scale.bench_bulk(
        services,
        actor=actor_for_user(world.users["platform"]),
        organization=world.platform,
        tag=data.BULK_TAG,
    )
    rate = found["moved"] / found["service_seconds"]
    raw_rate = found["raw_rows"] / found["raw_seconds"]
    print(
        f"  service: job {found['status']}, {found['moved']:,} moved in "
        f"{found['service_seconds']:.2f} s ({rate:,.0f} devices/s, {found['queries']} queries); "
        f"raw UPDATE: {found['raw_rows']:,} rows in {found['raw_seconds']:.2f} s "
        f"({raw_rate:,.0f} rows/s); time ratio service / raw "
        f"{found['service_seconds'] / found['raw_seconds']:.1f} (not gated: the service also "
        "writes a job item, an audit row and an event per device)"
    )
    complete = found["moved"] == expected == found["succeeded"]
    per_chunk = found["queries"] / max(1, -(-expected // 10_000))
    goal(
        "bulk transition: queries per 10,000 devices",
        per_chunk if complete else None,
        QUERIES_PER_CHUNK,
    )
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="quick")
    parser.add_argument("--devices", type=int, help="override the scale's device count")
    parser.add_argument(
        "--only",
        choices=PARTS,
        action="append",
        help="run only this part (repeatable); default: all",
    )
    arguments = parser.parse_args()
    parts = arguments.only or PARTS
    scale = dict(SCALES[arguments.scale])
    if arguments.devices:
        scale["devices"] = arguments.devices
    world = setup()
    from bench import registry_data as data

    data.load_devices(world, SMALL_FLEET, bulk=0, using=SMALL)
    seconds = data.load_devices(world, scale["devices"], bulk=scale["bulk"])
    print(
        f"scale={arguments.scale} devices={scale['devices']:,} organizations=100 "
        f"(COPY + index rebuild {seconds:.1f} s)",
        flush=True,
    )
    found: dict[str, Any] = {}
    moved: dict[str, Any] = {}
    if "scoping" in parts:
        scoping(world, scale["repeat"])
    if "api" in parts:
        found = api(world, scale["samples"])
    if "bulk" in parts:
        moved = bulk(world, scale["bulk"])
    record = {
        "scale": arguments.scale,
        **scale,
        "parts": list(parts),
        "api": found,
        "bulk": moved,
        "goals": GOALS,
    }
    suffix = "" if set(parts) == set(PARTS) else "-" + "-".join(parts)
    out = ROOT / "var" / "bench" / f"registry-{arguments.scale}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2, default=str))
    missed = [name for name, value, limit in GOALS if value is None or value > limit]
    print(
        f"{len(GOALS) - len(missed)}/{len(GOALS)} goals met"
        + (f"; missed: {missed}" if missed else "")
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
