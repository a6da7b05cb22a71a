"""Benchmark: secure connectivity (issue 4, Performance).

In a dedicated database (``fleetops_bench_connectivity``) and Redis database (13), measures in
one run, each against a baseline measured in the same run:

1. enrollment throughput: devices/s through ``POST /device/v1/enroll`` (claim-token policy,
   auto-activate, a provisioning template; CSR checked, certificate signed and recorded, device
   registered, audited) served by a real daphne (production settings) on a free port, from
   several client threads, with every device key and CSR generated before the timed part;
   baseline: ``apps.devices.pki.issuance.device_certificate`` alone, in-process, same CSRs;
2. a reconnect storm: N devices (the reference agent's fleet, ``bench/connectivity_storm.py``)
   connected over MQTTS with client certificates to a Mosquitto running the platform's generated
   configuration; the broker is restarted (SIGTERM, start; persistence on) and the time until
   every device has its CONNACK again is measured; baseline: N TLS handshakes alone (same
   certificates, same pacing) against the same listener.

There are no numeric goals for these: it prints the figures and their ratios, and exits non-zero
when a piece could not be measured or a sanity check fails (an enrollment not answered 201, a
device that did not reconnect, a handshake refused).

Usage: python bench/connectivity.py [--scale quick|full] [--enrollments N] [--storm N ...]
       [--processes P] (quick: 300 enrollments, a storm of 1,000; full: 2,000 enrollments,
       storms of 1,000 and 10,000)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")

SCALES: dict[str, dict[str, Any]] = {
    "quick": {"enrollments": 300, "storms": (1_000,)},
    "full": {"enrollments": 2_000, "storms": (1_000, 10_000)},
}
DATABASE = "fleetops_bench_connectivity"
REDIS_DB = 13  # the enrollment's nonces, rate counters and Celery messages stay out of db 0
OUT = ROOT / "var" / "bench"
CHECKS: list[tuple[str, bool]] = []  # (sanity check, passed)
MISSING: list[str] = []  # measured pieces that could not be measured


def check(name: str, passed: bool) -> bool:
    CHECKS.append((name, passed))
    print(f"  check: {name}: {'ok' if passed else 'FAILED'}", flush=True)
    return passed


@dataclass
class World:
    maker: Any
    customer: Any
    version: Any
    policy: Any


def setup() -> World:
    """The bench databases, shared with the daphne and broker this run starts (through the
    environment, which the child processes inherit)."""
    import redis

    from bench import registry_data as data

    base, _ = data.admin_url()
    data.recreate_database(DATABASE)
    os.environ["DATABASE_URL"] = f"{base}/{DATABASE}"
    os.environ["REDIS_URL"] = os.environ["REDIS_URL"].rpartition("/")[0] + f"/{REDIS_DB}"
    os.environ.pop("CELERY_BROKER_URL", None)  # follows REDIS_URL
    # One secret for this process and the server: it also encrypts the CA keys in the database.
    os.environ["SECRET_KEY"] = secrets.token_urlsafe(48)
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False  # no query log
    return build_world()


def build_world() -> World:
    """A manufacturer, its customer, a profile, a provisioning template and a claim-token
    policy that activates devices in the customer (through the services)."""
    from django.core.management import call_command

    from apps.accounts import services
    from apps.accounts.models import Organization
    from apps.core.actors import SYSTEM
    from apps.devices.choices import EnrollmentMethod, FirstContact
    from apps.devices.enrollment_policies import policy_create
    from apps.profiles.provisioning import template_create
    from apps.profiles.services import profile_create

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
    template_create(
        actor=SYSTEM,
        organization=maker,
        name="Sensor defaults",
        profile=profile,
        configuration={"report_interval_s": 30},
        heartbeat_interval_seconds=60,
        routing_labels=["bench"],
    )
    policy = policy_create(
        actor=SYSTEM,
        organization=maker,
        name="Bench batch",
        method=EnrollmentMethod.CLAIM_TOKEN,
        target_organization=customer,
        profile=profile,
        first_contact=FirstContact.ACTIVATE,
    )
    return World(maker, customer, profile.versions.get(number=1), policy)


def enrollment(world: World, count: int, clients: int) -> dict[str, Any]:
    from bench import connectivity_enroll as enroll

    print(
        f"enrollment: {count:,} devices, {clients} client threads "
        f"(load average {os.getloadavg()[0]:.1f})",
        flush=True,
    )
    found = enroll.run(world, count=count, clients=clients, log=OUT / "connectivity-daphne.log")
    if found["endpoint_rate"] is None:
        MISSING.append("enrollment throughput")
        return found
    ratio = found["raw_rate"] / found["endpoint_rate"]
    found["ratio"] = ratio
    print(
        f"  endpoint: {found['endpoint_rate']:,.1f} devices/s ({count:,} in "
        f"{found['endpoint_seconds']:.2f} s); signing alone (device_certificate, in-process, "
        f"best of two): {found['raw_rate']:,.1f} devices/s; time per device endpoint / signing "
        f"alone: {ratio:.1f}",
        flush=True,
    )
    check(f"every enrollment answered 201 ({found['statuses']})", found["statuses"] == {201: count})
    check("every enrolled device is active with one certificate", found["recorded"] == count)
    return found


def storms(
    world: World, sizes: list[int], processes: int | None, pacing: dict[str, Any]
) -> list[dict[str, Any]]:
    from bench import connectivity_fleet as fleet

    directory = OUT / "connectivity"
    results = []
    with fleet.broker(directory / "broker", world) as broker:
        started = time.perf_counter()
        pool = fleet.create(world, max(sizes), directory / "devices", broker)
        print(
            f"reconnect storm: {max(sizes):,} devices with certificates and state directories "
            f"({time.perf_counter() - started:.1f} s)",
            flush=True,
        )
        for size in sizes:
            workers = processes or (1 if size <= 2_000 else 2)
            found = fleet.measure(
                broker, pool[:size], directory / f"run-{size}", processes=workers, **pacing
            )
            results.append(report_storm(found))
    return results


def report_storm(found: dict[str, Any]) -> dict[str, Any]:
    size, storm, shake = found["devices"], found.get("storm"), found.get("handshakes")
    print(
        f"  N={size:,} ({found['processes']} client process(es), {found['concurrency']} "
        f"handshakes in flight, at most {found['rate']:,.0f} new connections/s, so at least "
        f"{size / found['rate']:.1f} s; load average {found['load']:.1f}):",
        flush=True,
    )
    if shake:
        print(
            f"    TLS handshakes alone: {shake['seconds']:.2f} s (best of "
            f"{', '.join(f'{s:.2f}' for s in shake['runs'])}), "
            f"{size / shake['seconds']:,.0f} handshakes/s; CPU: broker "
            f"{shake['broker_cpu']:.1f} s, clients {shake['clients_cpu']:.1f} s"
        )
        check(f"every handshake succeeded (N={size:,})", shake["ok"] == size)
    if storm:
        print_storm(size, storm)
        check(
            f"every device reconnected exactly once (N={size:,}: {storm['reconnects']:,})",
            storm["reconnects"] == size == storm["connected"],
        )
    if not (storm and shake and "seconds" in storm):
        MISSING.append(f"reconnect storm N={size}")
        return found
    found["ratio"] = storm["seconds"] / shake["seconds"]
    print(f"    storm / handshakes alone: {found['ratio']:.2f}", flush=True)
    return found


def print_storm(size: int, storm: dict[str, Any]) -> None:
    print(
        f"    broker restart: SIGTERM -> exited {storm['stopped']:.2f} s -> listening again "
        f"{storm['restarted']:.2f} s; {storm['failed_attempts']:,} connection attempts failed "
        "meanwhile"
    )
    if "seconds" not in storm:
        print(f"    only {storm['reconnects']:,} of {size:,} devices reconnected")
        return
    print(
        f"    storm: all reconnected {storm['seconds']:.2f} s after the broker listened again "
        f"(50% {storm['p50']:.2f} s, 90% {storm['p90']:.2f} s, 99% {storm['p99']:.2f} s), "
        f"{storm['since_sigterm']:.2f} s after SIGTERM; {size / storm['seconds']:,.0f} "
        f"reconnects/s; CPU: broker {storm['broker_cpu']:.1f} s (since its start), clients "
        f"{storm['clients_cpu']:.1f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="quick")
    parser.add_argument("--enrollments", type=int, help="override the scale's enrollments")
    parser.add_argument("--clients", type=int, default=8, help="enrollment client threads")
    parser.add_argument("--storm", type=int, action="append", help="storm size (repeatable)")
    parser.add_argument(
        "--processes", type=int, help="storm client processes (default: 1, 2 above 2,000)"
    )
    parser.add_argument("--concurrency", type=int, help="storm: handshakes in flight")
    parser.add_argument("--connect-rate", type=float, help="storm: new connections/s")
    arguments = parser.parse_args()
    pacing = {
        name: value
        for name, value in (
            ("concurrency", arguments.concurrency),
            ("rate", arguments.connect_rate),
        )
        if value
    }
    scale = SCALES[arguments.scale]
    sizes = arguments.storm or list(scale["storms"])
    from bench.connectivity_fleet import raise_open_files_limit

    print(f"scale={arguments.scale} open files={raise_open_files_limit():,}", flush=True)
    world = setup()
    enrolled = enrollment(world, arguments.enrollments or scale["enrollments"], arguments.clients)
    stormed = storms(world, sizes, arguments.processes, pacing)
    record = {
        "scale": arguments.scale,
        "enrollment": enrolled,
        "storms": stormed,
        "checks": CHECKS,
        "missing": MISSING,
        "load": os.getloadavg(),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"connectivity-{arguments.scale}.json"
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
