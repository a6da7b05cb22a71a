"""Benchmark: publish-to-browser latency of a status change with 1,000 open websockets (issue 5).

In a dedicated database (``fleetops_bench_live``) and Redis database (12), measures in one run:

1. the platform: a device (token credentials, on its own Mosquitto with the platform's
   configuration) publishes ``devices/<id>/status`` retained at QoS 1 -> ``manage.py
   connectivity`` (its own process, as in the Procfile) applies it and pushes after commit ->
   Channels group ``org.<id>`` on Redis -> ``daphne config.asgi:application`` (production
   settings) -> 1,000 websockets on ``/ws/live/``, each signed in with a session cookie of a
   member of the device's organization. Run with the worker's default batching window (200 ms,
   which coalesces a reconnect storm into one push per organization) and with none (0 ms);
2. the websocket push alone: ``PUBLISH`` on a Redis channel -> a bare asyncio websocket server
   (``bench/live_latency_ws.py``) -> the same 1,000 clients; measured before and after the
   platform runs, the faster of the two counting (per figure).

Latency = the time a client's socket delivered the message minus the time the publish was sent
(one clock: the publisher and the 1,000 clients are this process; the publish runs in a thread
so the clients keep reading). p50/p99/max over every client of every round, and their ratios
to the push alone; the record also keeps each round's slowest delivery (``round_max_ms``), to
tell a slow round (a busy neighbour) from a slow fan-out. There is no numeric goal: it exits
non-zero when a piece could not be measured or a check fails (a client not connected, a round
not delivered to every client, a message that is not the expected connectivity change).

``--layer pubsub`` runs the platform's processes (and this one) with Channels' Redis pub/sub
layer instead of the configured one (``bench/live_latency_settings.py``), to compare.

Usage: python bench/live_latency.py [--scale quick|full] [--clients N] [--rounds N]
       [--layer configured|pubsub]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

SCALES: dict[str, dict[str, int]] = {
    "quick": {"clients": 1_000, "rounds": 30},
    "full": {"clients": 1_000, "rounds": 100},
}
DATABASE = "fleetops_bench_live"
REDIS_DB = 12
CHANNEL = "fleetops-bench-live"
BATCH_WINDOWS_MS = (200, 0)  # the worker's default, then none
LABELS = {
    "channels": "Channels group_send -> daphne alone",
    **{f"{w}ms": f"platform, MQTT -> worker batching {w} ms -> daphne" for w in BATCH_WINDOWS_MS},
}
GAP_SECONDS = 0.25  # between rounds
ROUND_TIMEOUT = 10.0
OUT = ROOT / "var" / "bench"
LOGS = OUT / "live"
SETTINGS = {"configured": "config.settings.prod", "pubsub": "bench.live_latency_settings"}
CHECKS: list[tuple[str, bool]] = []
MISSING: list[str] = []


def check(name: str, passed: bool) -> bool:
    CHECKS.append((name, passed))
    print(f"  check: {name}: {'ok' if passed else 'FAILED'}", flush=True)
    return passed


@dataclass
class World:
    customer: Any
    device: Any
    cookie: str
    token: str


def setup() -> World:
    """The bench database and Redis database, shared with the processes this run starts."""
    import redis

    from bench import registry_data as data

    base, _ = data.admin_url()
    data.recreate_database(DATABASE)
    os.environ["DATABASE_URL"] = f"{base}/{DATABASE}"
    os.environ["REDIS_URL"] = os.environ["REDIS_URL"].rpartition("/")[0] + f"/{REDIS_DB}"
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ["SECRET_KEY"] = secrets.token_urlsafe(48)  # sessions and CA keys, all processes
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False
    return build_world()


def build_world() -> World:
    """A manufacturer and its customer, a profile, one active device with a token, and a
    member of the customer signed in (a session row and its cookie)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.cached_db import SessionStore
    from django.core.management import call_command

    from apps.accounts import services
    from apps.accounts.models import Membership, Organization, User
    from apps.accounts.roles import Role
    from apps.core.actors import SYSTEM
    from apps.devices.models import Device
    from apps.profiles.services import profile_create
    from tests.broker_support import create_token

    call_command("migrate", verbosity=0)
    kind = Organization.Kind
    platform = services.organization_create(
        actor=SYSTEM, name="Platform", parent=None, kind=kind.PLATFORM
    )
    maker = services.organization_create(
        actor=SYSTEM, name="Acme Devices", parent=platform, kind=kind.MANUFACTURER
    )
    customer = services.organization_create(actor=SYSTEM, name="Northwind", parent=maker)
    profile = profile_create(actor=SYSTEM, organization=maker, name="Sensor", slug="sensor")
    device = Device.objects.create(
        organization=customer,
        manufacturer=maker,
        profile_version=profile.versions.get(number=1),
        serial="LIVE-0001",
        state="active",
        connectivity="offline",
    )
    user = User.objects.create_user("viewer@northwind.test", secrets.token_urlsafe(16))
    Membership.objects.create(organization=customer, user=user, role=Role.VIEWER)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    from django.conf import settings

    cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
    return World(customer, device, cookie, create_token(device))


# --- processes -----------------------------------------------------------------------------------


@contextlib.contextmanager
def bare_server() -> Iterator[int]:
    from bench.connectivity_enroll import free_port, wait_for_port

    port = free_port()
    log = (LOGS / "bare-server.log").open("wb")
    command = [sys.executable, str(ROOT / "bench" / "live_latency_ws.py"), "serve", str(port)]
    process = subprocess.Popen(
        [*command, os.environ["REDIS_URL"], CHANNEL], cwd=ROOT, stdout=log, stderr=log
    )
    try:
        wait_for_port(port, process)  # type: ignore[arg-type]
        yield port
    finally:
        stop(process)
        log.close()


@contextlib.contextmanager
def connectivity_worker(mqtt_url: str, batch_ms: int) -> Iterator[None]:
    """``manage.py connectivity`` as the Procfile runs it (production settings), on the bench
    broker; returns once it has subscribed."""
    log_path = LOGS / f"connectivity-{batch_ms}ms.log"
    environment = os.environ | {
        "MQTT_URL": mqtt_url,
        "LOG_LEVEL": "INFO",
    }
    command = [sys.executable, "manage.py", "connectivity", "--suffix", "bench-live"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--batch-ms", str(batch_ms)],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "subscribed to" not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the connectivity worker did not subscribe (see {log_path})")
            time.sleep(0.1)
        yield
    finally:
        stop(process)


@contextlib.contextmanager
def daphne() -> Iterator[int]:
    """``daphne config.asgi:application`` on a free port, with this run's settings module."""
    from bench.connectivity_enroll import free_port, wait_for_port

    port = free_port()
    binary = Path(sys.executable).with_name("daphne")
    with (LOGS / "daphne.log").open("wb") as log:
        process = subprocess.Popen(
            [str(binary), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=ROOT,
            env=os.environ | {"LOG_LEVEL": "WARNING"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port(port, process)
        yield port
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- rounds --------------------------------------------------------------------------------------


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    if not ordered:
        return {}

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000

    return {
        "p50_ms": at(0.50),
        "p99_ms": at(0.99),
        "max_ms": ordered[-1] * 1000,
        "mean_ms": statistics.fmean(ordered) * 1000,
        "samples": len(ordered),
    }


async def rounds(
    pool: Any,
    count: int,
    publish: Callable[[int], float],
    expected: Callable[[int, bytes], bool],
) -> dict[str, Any]:
    """``count`` rounds: publish, wait for every client; the latencies and what went wrong."""
    latencies: list[float] = []
    slowest: list[float] = []  # per round, to tell a slow round from a slow fan-out
    short = wrong = 0
    for number in range(count):
        got = await pool.round(lambda number=number: publish(number), ROUND_TIMEOUT)
        short += len(pool.clients) - len(got)
        wrong += sum(not expected(number, payload) for _, payload in got)
        latencies.extend(latency for latency, _ in got)
        slowest.append(round(max((latency for latency, _ in got), default=0.0) * 1000, 1))
        await asyncio.sleep(GAP_SECONDS)
    found = {"undelivered": short, "unexpected": wrong, "rounds": count, "round_max_ms": slowest}
    return summary(latencies) | found


async def bare_run(port: int, clients: int, count: int) -> dict[str, Any]:
    import redis

    from bench.live_latency_ws import Pool

    publisher = redis.Redis.from_url(os.environ["REDIS_URL"])
    pool = Pool("127.0.0.1", port, "/", {})
    opened = await pool.connect(clients)
    check(f"{clients:,} clients connected to the bare server ({opened:,})", opened == clients)
    await pool.settle(0.5)

    def publish(number: int) -> float:
        body = json.dumps({"type": "batch", "round": number})
        sent = time.monotonic()
        publisher.publish(CHANNEL, body)
        return sent

    found = await rounds(pool, count, publish, lambda n, p: json.loads(p)["round"] == n)
    pool.close()
    return found


async def platform_runs(world: World, running: Any, web: int, clients: int, count: int) -> Any:
    from bench.live_latency_ws import Pool
    from tests.broker_support import connect_token

    device_id = str(world.device.pk)
    topic = f"devices/{device_id}/status"
    session = connect_token(running, device_id, world.token)
    pool = Pool("127.0.0.1", web, "/ws/live/", {"Cookie": world.cookie})
    started = time.monotonic()
    opened = await pool.connect(clients)
    print(f"  {opened:,} websockets signed in to daphne in {time.monotonic() - started:.1f} s")
    if pool.refused:
        print(f"  refused handshakes: {dict(pool.refused)}")
    check(f"{clients:,} signed-in websockets on /ws/live/ ({opened:,})", opened == clients)
    await pool.settle(2.0)  # every consumer's "hello"
    state = ["offline"]  # the device's, flipped by every publish (whichever run it is in)

    def publish(number: int) -> float:
        state[0] = "online" if state[0] == "offline" else "offline"
        sent = time.monotonic()
        session.publish(topic, json.dumps({"state": state[0]}), qos=1, retain=True)
        return sent

    def expected(number: int, payload: bytes) -> bool:
        change = (json.loads(payload).get("messages") or [{}])[0]
        return change.get("id") == device_id and change.get("connectivity") == state[0]

    url = f"mqtt://{running.platform_username}:{running.platform_password}@127.0.0.1:"
    results: dict[str, Any] = {}
    try:
        results["channels"] = await rounds(pool, count, group_send(world, state), expected)
        results["channels"]["open_after"] = pool.open
        state[0] = "offline"  # the device row's: the pushes alone did not change it
        for window in BATCH_WINDOWS_MS:
            with connectivity_worker(url + str(running.platform_port), window):
                results[f"{window}ms"] = await rounds(pool, count, publish, expected)
            results[f"{window}ms"]["open_after"] = pool.open
    finally:
        pool.close()
        session.close()
    return results


def group_send(world: World, state: list[str]) -> Callable[[int], float]:
    """The Channels part alone: the push ``apps.devices.connectivity.push`` makes, sent from
    here (no MQTT, no worker, no database)."""
    from apps.devices.connectivity import Changed, push

    def publish(number: int) -> float:
        state[0] = "online" if state[0] == "offline" else "offline"
        change = Changed(
            world.device.pk, world.customer.pk, "LIVE-0001", "x", state[0], world.device.created_at
        )
        sent = time.monotonic()
        push([change])
        return sent

    return publish


def measure(world: World, clients: int, count: int) -> dict[str, Any]:
    from bench.connectivity_fleet import broker

    found: dict[str, Any] = {"clients": clients, "rounds": count}
    with broker(LOGS / "broker", world) as running:
        running.sync()  # the device's token into the broker's password file
        with bare_server() as bare_port:
            found["bare_before"] = asyncio.run(bare_run(bare_port, clients, count))
            report("push alone (before)", found["bare_before"])
            with daphne() as web:
                platform = asyncio.run(platform_runs(world, running, web, clients, count))
            for key, result in platform.items():
                found[f"platform_{key}"] = result
                report(LABELS[key], result)
            found["bare_after"] = asyncio.run(bare_run(bare_port, clients, count))
            report("push alone (after)", found["bare_after"])
    return found


def report(label: str, result: dict[str, Any]) -> None:
    if "p50_ms" not in result:
        print(f"  {label}: nothing received")
        return
    print(
        f"  {label}: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, max "
        f"{result['max_ms']:.1f} ms ({result['samples']:,} deliveries, {result['rounds']} rounds)",
        flush=True,
    )


def ratios(found: dict[str, Any]) -> None:
    """Each platform path over the push alone; the push alone's faster run counts, per
    figure (a noisy neighbour slows one run, never makes one faster)."""
    runs = [found[key] for key in ("bare_before", "bare_after") if "p50_ms" in found[key]]
    if not runs:
        MISSING.append("the websocket push alone")
        return
    bare = {name: min(run[name] for run in runs) for name in ("p50_ms", "p99_ms")}
    found["bare"] = bare
    print(
        f"  push alone, the faster runs: p50 {bare['p50_ms']:.1f} ms, p99 {bare['p99_ms']:.1f} ms"
    )
    for key, label in LABELS.items():
        result = found.get(f"platform_{key}", {})
        if "p50_ms" not in result:
            MISSING.append(label)
            continue
        result["ratio_p50"] = result["p50_ms"] / bare["p50_ms"]
        result["ratio_p99"] = result["p99_ms"] / bare["p99_ms"]
        print(
            f"  {label} / push alone: p50 {result['ratio_p50']:.1f}x, "
            f"p99 {result['ratio_p99']:.1f}x",
            flush=True,
        )


def sanity(found: dict[str, Any], clients: int) -> None:
    platform = ["platform_channels", *(f"platform_{w}ms" for w in BATCH_WINDOWS_MS)]
    for key in ("bare_before", "bare_after", *platform):
        result = found.get(key, {})
        check(
            f"{key}: every round reached every client ({result.get('undelivered')} missing)",
            result.get("undelivered") == 0,
        )
        check(
            f"{key}: every message was the expected one ({result.get('unexpected')} not)",
            result.get("unexpected") == 0,
        )
        if key.startswith("platform"):
            check(
                f"{key}: the {clients:,} websockets stayed open",
                result.get("open_after") == clients,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="quick")
    parser.add_argument("--clients", type=int, help="websocket clients (default 1,000)")
    parser.add_argument("--rounds", type=int, help="status changes per path")
    parser.add_argument("--layer", choices=SETTINGS, default="configured")
    arguments = parser.parse_args()
    # this process, daphne and the worker: the same settings (and so the same channel layer)
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS[arguments.layer]
    scale = SCALES[arguments.scale]
    clients = arguments.clients or scale["clients"]
    count = arguments.rounds or scale["rounds"]
    from bench.connectivity_fleet import raise_open_files_limit

    print(
        f"scale={arguments.scale} layer={arguments.layer} clients={clients:,} rounds={count} "
        "open files="
        f"{raise_open_files_limit():,} (load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    LOGS.mkdir(parents=True, exist_ok=True)
    world = setup()
    found = measure(world, clients, count)
    ratios(found)
    sanity(found, clients)
    record = found | {
        "layer": arguments.layer,
        "checks": CHECKS,
        "missing": MISSING,
        "load": os.getloadavg(),
    }
    suffix = "" if arguments.layer == "configured" else f"-{arguments.layer}"
    out = OUT / f"live-latency-{arguments.scale}{suffix}.json"
    out.write_text(json.dumps(record, indent=2, default=str))
    failed = [name for name, passed in CHECKS if not passed]
    print(
        f"{len(CHECKS) - len(failed)}/{len(CHECKS)} checks passed"
        + (f"; failed: {failed}" if failed else "")
        + (f"; not measured: {MISSING}" if MISSING else "")
        + f" (figures in {out.relative_to(ROOT)})"
    )
    return 1 if failed or MISSING else 0


if __name__ == "__main__":
    sys.exit(main())
