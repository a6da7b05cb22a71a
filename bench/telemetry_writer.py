"""Benchmark: the telemetry writer against a raw binary COPY of the same rows into the same table.

In a dedicated database (``fleetops_bench_telemetry``, dropped and recreated on every run) with
1,000 devices, it generates N telemetry sample rows (five float metrics each, timestamps over
the last hours) and, in the same run, with ``telemetry_sample`` truncated before each pass:

- *raw*: psycopg ``COPY telemetry_sample (...) FROM STDIN (FORMAT BINARY)`` of the rows (jsonb
  encoded by orjson, as psycopg does it), in the same batches of ``--batch`` rows (5,000), one
  transaction each, as the writer gets them: the floor of any writer of those batches. One
  COPY of all the rows in one transaction is measured and printed too (context: what batching
  and its commits cost, which the pipeline pays whatever writes);
- *writer (fast path)*: ``apps.telemetry.pipeline.writer.write`` on each batch, one transaction
  each, as the pipeline calls it: the savepoint, the binary COPY straight into the partitioned
  table;
- *writer (de-duplicating)*: the same with the de-duplicating path forced: COPY into the
  temporary staging table, ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING`` the keys
  and the matching of the stored rows.

Prints rows/s of each and the ratios writer / raw (goals: >= 0.70 fast path, >= 0.45
de-duplicating). Passes are interleaved (the order rotates every round), each after a
TRUNCATE, VACUUM and CHECKPOINT; best of three each. Exits non-zero when a goal is missed.

Usage: python bench/telemetry_writer.py [--scale quick|full] [--rows N] [--batch N]
       (quick = 200,000 rows, full = 1,000,000; make bench SCALE=full)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
DATABASE = "fleetops_bench_telemetry"
SCALES = {"quick": 200_000, "full": 1_000_000}
GOALS = {"fast": 0.70, "dedupe": 0.45}
DEVICES = 1_000
ROUNDS = 3


def use_bench_database() -> None:
    from bench import registry_data as data

    base, _ = data.admin_url()
    data.recreate_database(DATABASE)
    os.environ["DATABASE_URL"] = f"{base}/{DATABASE}"


def build() -> list[uuid.UUID]:
    """Migrate, then an organization, a profile and ``DEVICES`` active devices."""
    from django.core.management import call_command

    from apps.accounts import services
    from apps.accounts.models import Organization
    from apps.core.actors import SYSTEM
    from apps.devices.models import Device
    from apps.profiles.models import DeviceProfile, ProfileVersion

    call_command("migrate", verbosity=0)
    platform = services.organization_create(actor=SYSTEM, name="Platform", parent=None)
    acme = services.organization_create(
        actor=SYSTEM, name="Acme", parent=platform, kind=Organization.Kind.MANUFACTURER
    )
    profile = DeviceProfile.objects.create(organization=acme, name="Sensor", slug="sensor")
    version = ProfileVersion.objects.create(profile=profile, number=1)
    devices = Device.objects.bulk_create(
        Device(
            organization=acme,
            manufacturer=acme,
            profile_version=version,
            serial=f"SN-{i:06d}",
            state="active",
        )
        for i in range(DEVICES)
    )
    return [device.pk for device in devices]


def generate(rows: int, devices: list[uuid.UUID]) -> list[tuple[Any, ...]]:
    """Sample rows in the writer's shape: (device, ts, kind, boot, seq, idx, received_at,
    metrics, extra), ``rows / DEVICES`` per device, one second apart, ending a minute ago."""
    rng = random.Random(5)
    now = datetime.now(UTC)
    per_device = -(-rows // len(devices))
    start = now - timedelta(minutes=1, seconds=per_device)
    generated = []
    for seq in range(per_device):
        ts = start + timedelta(seconds=seq, microseconds=rng.randrange(1000))
        for device_id in devices:
            metrics = {
                "temperature": round(rng.uniform(18, 26), 2),
                "humidity": round(rng.uniform(30, 60), 1),
                "battery_pct": round(rng.uniform(10, 100), 1),
                "rssi_dbm": round(rng.uniform(-90, -50), 1),
                "cpu_pct": round(rng.uniform(0, 40), 1),
            }
            generated.append((device_id, ts, 1, 1, seq + 1, 0, now, metrics, None))
            if len(generated) == rows:
                return generated
    return generated


def truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE telemetry_sample")
        cursor.execute("VACUUM ANALYZE telemetry_sample")
        cursor.execute("CHECKPOINT")  # no pass pays for the previous one's dirty pages


def raw_copy(rows: list[tuple[Any, ...]], batch: int) -> float:
    """Plain psycopg binary COPYs of ``batch`` rows each, a transaction each, jsonb encoded by
    orjson (psycopg's own jsonb dumper: measured faster than writing pre-encoded bytes)."""
    import orjson
    from django.db import connection, transaction
    from psycopg.types.json import set_json_dumps

    columns = "device_id, ts, kind, boot, seq, idx, received_at, metrics, extra"
    types = ["uuid", "timestamptz", "int2", "int8", "int8", "int2", "timestamptz", "jsonb", "jsonb"]
    statement = f"COPY telemetry_sample ({columns}) FROM STDIN (FORMAT BINARY)"
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        with transaction.atomic(), connection.cursor() as cursor:
            set_json_dumps(orjson.dumps, cursor.cursor)
            with cursor.cursor.copy(statement) as copy:
                copy.set_types(types)
                for row in rows[start : start + batch]:
                    copy.write_row(row)
    return time.perf_counter() - started


def through_writer(rows: list[tuple[Any, ...]], batch: int, deduplicate: bool) -> float:
    from django.db import transaction

    from apps.telemetry.pipeline import writer

    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        with transaction.atomic():
            stored = writer.write(writer.SAMPLES, chunk, deduplicate=deduplicate)
        assert len(stored) == len(chunk), (len(stored), len(chunk))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="quick")
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--batch", type=int, default=5_000)
    arguments = parser.parse_args()
    rows = arguments.rows or SCALES[arguments.scale]
    use_bench_database()
    import django

    django.setup()
    data = generate(rows, build())
    batch = arguments.batch
    times: dict[str, list[float]] = {"one": [], "raw": [], "fast": [], "dedupe": []}
    for round_number in range(ROUNDS):
        names = list(times)
        for name in names[round_number:] + names[:round_number]:  # each goes first once
            truncate()
            if name in ("one", "raw"):
                times[name].append(raw_copy(data, len(data) if name == "one" else batch))
            else:
                times[name].append(through_writer(data, batch, name == "dedupe"))
    best = {name: min(values) for name, values in times.items()}
    print(f"rows={rows} batch={batch} load average={os.getloadavg()[0]:.1f}")
    print(f"raw, one COPY of all:     {rows / best['one']:>10,.0f} rows/s ({best['one']:.2f} s)")
    print(f"raw binary COPY:          {rows / best['raw']:>10,.0f} rows/s ({best['raw']:.2f} s)")
    failed = False
    for name, label in (("fast", "writer (fast path)"), ("dedupe", "writer (de-duplicating)")):
        ratio = best["raw"] / best[name]
        failed |= ratio < GOALS[name]
        print(
            f"{label + ':':<25} {rows / best[name]:>10,.0f} rows/s ({best[name]:.2f} s) "
            f"ratio {ratio:.2f} (goal >= {GOALS[name]:.2f}; "
            f"{best['one'] / best[name]:.2f} of the one COPY)"
        )
    report = {"rows": rows, "batch": batch, "seconds": best, "goals": GOALS}
    output = ROOT / "var" / "bench" / f"telemetry-writer-{arguments.scale}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
