"""Device list API latency against the floor of any request through Django.

This module is also the bench's ROOT_URLCONF: the project's URLs plus ``/bench/raw-devices/``,
a plain Django view that serves the same rows from one raw keyset SQL query as JSON. Both are
requested in-process through ``django.test.Client`` as the same signed-in organization owner,
interleaved, in the same run.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.urls import path

from config import urls as project_urls

RAW_FIELDS = (  # the API serializer's fields
    "d.id, d.organization_id AS organization, d.manufacturer_id AS manufacturer, "
    "v.profile_id AS profile, d.profile_version_id AS profile_version, d.serial, d.name, d.state, "
    "d.state_changed_at, d.tags, d.attributes, d.latitude, d.longitude, d.site_id AS site, "
    "d.inventory, d.firmware_version, d.connectivity, d.last_seen_at, "
    "d.replaced_by_id AS replaced_by, d.created_at, d.updated_at"
)
RAW_SQL = (  # a constant column list; every value is bound
    f"SELECT {RAW_FIELDS} FROM devices_device d "  # noqa: S608
    "JOIN profiles_profileversion v ON v.id = d.profile_version_id WHERE d.organization_id IN "
    "(SELECT id FROM accounts_organization WHERE path LIKE %(path)s) "
    "AND d.state = %(state)s AND d.tags @> ARRAY[%(tag)s]::varchar(64)[] "
    "{keyset}ORDER BY d.id DESC LIMIT %(size)s"
)


def raw_devices(request: HttpRequest) -> JsonResponse:
    """The floor: one keyset query, rows as JSON. Scope and filter come in the query string."""
    params = {
        "path": request.GET["path"] + "%",
        "state": request.GET["state"],
        "tag": request.GET["tag"],
        "after": request.GET.get("after") or None,
        "size": int(request.GET.get("page_size", "50")),
    }
    with connection.cursor() as cursor:
        keyset = "AND d.id < %(after)s::uuid " if params["after"] else ""
        cursor.execute(RAW_SQL.format(keyset=keyset), params)
        names = [column.name for column in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    after = str(rows[-1]["id"]) if rows else None
    return JsonResponse({"next": after, "results": rows}, encoder=DjangoJSONEncoder)


urlpatterns = [path("bench/raw-devices/", raw_devices), *project_urls.urlpatterns]
BLOCKS = 5
handler404 = project_urls.handler404
handler500 = project_urls.handler500


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _get(client: Any, url: str) -> dict[str, Any]:
    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} -> {response.status_code}: {response.content[:300]!r}")
    return response.json()  # type: ignore[no-any-return]


def _ids(body: dict[str, Any]) -> list[str]:
    return [str(row["id"]) for row in body["results"]]


def deep_cursor(client: Any, first: str, pages: int) -> tuple[str, int]:
    """Follow the API's ``next`` link ``pages`` times; the URL of the page after them."""
    url, seen = first, 0
    for _ in range(pages):
        body = _get(client, url)
        seen += len(body["results"])
        if not body.get("next"):
            raise RuntimeError(f"the list ended after {seen} rows, before {pages} pages")
        url = body["next"]
    return url, seen


def raw_position(path_prefix: str, state: str, tag: str, offset: int) -> str:
    """The id of the row at ``offset`` (0-based) in the filtered, scoped, -id ordered list."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id FROM devices_device WHERE organization_id IN "
            "(SELECT id FROM accounts_organization WHERE path LIKE %s) AND state = %s "
            "AND tags @> ARRAY[%s]::varchar(64)[] ORDER BY id DESC OFFSET %s LIMIT 1",
            [path_prefix + "%", state, tag, offset],
        )
        row = cursor.fetchone()
    if row is None:
        raise RuntimeError(f"fewer than {offset + 1} matching devices: use a larger --devices")
    return str(row[0])


def measure(targets: dict[str, str], client: Any, samples: int) -> dict[str, list[float]]:
    """Interleaved timings (seconds) of each target URL, after a warm-up round. The garbage
    collector runs between rounds, never inside a timed request."""
    timings: dict[str, list[float]] = {name: [] for name in targets}
    gc.disable()
    try:
        for round_number in range(samples + 10):
            for name, url in targets.items():
                started = time.perf_counter()
                response = client.get(url)
                elapsed = time.perf_counter() - started
                if response.status_code != 200:
                    raise RuntimeError(f"GET {url} -> {response.status_code}")
                if round_number >= 10:
                    timings[name].append(elapsed)
            gc.collect()
    finally:
        gc.enable()
    return timings


def robust(values: list[float], blocks: int = BLOCKS) -> dict[str, float]:
    """p50 of all samples; p99 as the median of the p99s of consecutive blocks, so one burst of
    load from another process on this shared machine does not decide the result alone."""
    size = len(values) // blocks
    p99s = [percentile(values[i * size : (i + 1) * size], 0.99) for i in range(blocks)]
    return {"p50": percentile(values, 0.50), "p99": statistics.median(p99s)}


def bench_list(
    client: Any, organization: Any, *, api_query: str, samples: int, depth_pages: int
) -> dict[str, Any]:
    """p50/p99 of the API's first and deep pages and of the raw baseline at the same positions.
    Verifies first that API and baseline return the same ids at both positions."""
    state, tag = "active", "eu"
    raw = f"/bench/raw-devices/?path={organization.path}&state={state}&tag={tag}&page_size=50"
    targets = {"raw_first": raw}
    deep_offset = depth_pages * 50
    after = raw_position(organization.path, state, tag, deep_offset - 1)
    targets["raw_deep"] = f"{raw}&after={after}"
    api = f"/api/v1/devices/?{api_query}&page_size=50"
    api_status = client.get(api).status_code
    result: dict[str, Any] = {"api": api_status == 200, "api_status": api_status}
    if result["api"]:
        targets["api_first"] = api
        targets["api_deep"], _ = deep_cursor(client, api, depth_pages)
        for position in ("first", "deep"):
            api_ids = _ids(_get(client, targets[f"api_{position}"]))
            raw_ids = _ids(_get(client, targets[f"raw_{position}"]))
            if api_ids != raw_ids:
                raise RuntimeError(f"{position} page: the API and the baseline disagree")
    timings = measure(targets, client, samples)
    for name, values in timings.items():
        result[name] = robust(values)
    result["deep_rows"] = deep_offset
    return result
