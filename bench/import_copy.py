"""Benchmark: bulk import throughput against a raw COPY of the same rows into the same table.

In a dedicated database (``fleetops_bench_import``) it generates N device rows as a CSV file,
then, in the same run and with ``devices_device`` truncated between runs:

- *raw*: one ``COPY devices_device FROM STDIN`` of exactly those rows, pre-rendered in COPY text
  format (ids, timestamps and every NOT NULL column filled in): the floor of any import;
- *import*: the real code path (``apps.devices.imports.import_run``): the file is checked whole,
  parsed, every row validated against its profile version's JSON Schema, and each chunk written
  with its profile versions held (and their schemas read again), a staging COPY, the set-based
  ``INSERT ... ON CONFLICT DO NOTHING``, one audit row per device, job items, one event and the
  job's progress.

Prints rows/s of both and the ratio import / raw (goal >= 0.5). Best of two rounds each.

Usage: python bench/import_copy.py [--scale quick|full] [--rows N]
       (quick = 100,000 rows, full = 1,000,000; make bench SCALE=full)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
DATABASE = "fleetops_bench_import"
SCALES = {"quick": 100_000, "full": 1_000_000}
GOAL = 0.5
SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer"}, "color": {"enum": ["red", "blue"]}},
    "additionalProperties": False,
}


def use_bench_database() -> None:
    from bench import registry_data as data

    base, _ = data.admin_url()
    data.recreate_database(DATABASE)
    os.environ["DATABASE_URL"] = f"{base}/{DATABASE}"
    os.environ["MEDIA_ROOT"] = tempfile.mkdtemp(prefix="fleetops-bench-media-")


def build() -> dict[str, object]:
    from django.core.management import call_command

    from apps.accounts import services
    from apps.accounts.models import Organization
    from apps.core.actors import SYSTEM
    from apps.profiles.models import DeviceProfile, ProfileVersion

    call_command("migrate", verbosity=0)
    platform = services.organization_create(actor=SYSTEM, name="Platform", parent=None)
    acme = services.organization_create(
        actor=SYSTEM, name="Acme", parent=platform, kind=Organization.Kind.MANUFACTURER
    )
    profile = DeviceProfile.objects.create(organization=acme, name="Sensor", slug="sensor")
    version = ProfileVersion.objects.create(profile=profile, number=1, attributes_schema=SCHEMA)
    return {"organization": acme, "version": version}


def csv_file(rows: int) -> bytes:
    out = io.StringIO()
    out.write("serial,profile,name,tags,attributes,latitude,longitude,state\n")
    for i in range(rows):
        out.write(f'SN-{i:08d},sensor,Device {i},eu;lab,"{{""n"": {i}}}",45.5,-73.25,escrow\n')
    return out.getvalue().encode()


def copy_text(rows: int, world: dict[str, object]) -> str:
    """The same rows as COPY text, with every column the import writes."""
    from apps.core.ids import uuid7

    organization = world["organization"].pk  # type: ignore[attr-defined]
    version = world["version"].pk  # type: ignore[attr-defined]
    now = "2026-01-01 00:00:00+00"
    out = io.StringIO()
    for i in range(rows):
        attributes = json.dumps({"n": i})
        out.write(
            f"{uuid7()}\t{now}\t{now}\t{organization}\t{organization}\t{version}\tSN-{i:08d}\t"
            f"Device {i}\tescrow\t{now}\t{{eu,lab}}\t{attributes}\t45.5\t-73.25\t{{}}\t\t"
            "unknown\t\t{}\n"
        )
    return out.getvalue()


RAW_COLUMNS = (
    "id, created_at, updated_at, organization_id, manufacturer_id, profile_version_id, serial, "
    "name, state, state_changed_at, tags, attributes, latitude, longitude, inventory, "
    "firmware_version, connectivity, claim_code_hash, provisioning"
)


def truncate() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE devices_device CASCADE")
        cursor.execute("VACUUM ANALYZE devices_device")


def raw_copy(text: str) -> float:
    from django.db import connection, transaction

    started = time.perf_counter()
    with (
        transaction.atomic(),
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY devices_device ({RAW_COLUMNS}) FROM STDIN") as copy,
    ):
        copy.write(text)
    return time.perf_counter() - started


def through_import(data: bytes, world: dict[str, object]) -> tuple[float, dict[str, int]]:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apps.core.actors import SYSTEM
    from apps.devices import imports

    upload = SimpleUploadedFile("bench.csv", data, content_type="text/csv")
    job = imports.import_start(actor=SYSTEM, organization=world["organization"], upload=upload)
    started = time.perf_counter()
    job = imports.import_run(job_id=job.pk)
    return time.perf_counter() - started, job.result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="quick")
    parser.add_argument("--rows", type=int, default=0)
    arguments = parser.parse_args()
    rows = arguments.rows or SCALES[arguments.scale]
    use_bench_database()
    import django

    django.setup()
    from django.conf import settings

    from apps.devices import imports

    settings.DEVICE_IMPORT_INLINE = False
    imports.enqueue = lambda job_id: None  # type: ignore[assignment]  # timed here, not queued
    world = build()
    data, text = csv_file(rows), copy_text(rows, world)
    raw_times, import_times = [], []
    for _ in range(2):
        truncate()
        raw_times.append(raw_copy(text))
        truncate()
        elapsed, result = through_import(data, world)
        assert result["created"] == rows, result
        import_times.append(elapsed)
    raw, imported = min(raw_times), min(import_times)
    ratio = raw / imported
    print(f"rows={rows} (csv {len(data) / 1e6:.1f} MB) load average={os.getloadavg()[0]:.1f}")
    print(
        f"bulk import: import={rows / imported:,.0f} rows/s ({imported:.2f} s) "
        f"raw COPY={rows / raw:,.0f} rows/s ({raw:.2f} s) "
        f"ratio import/raw={ratio:.2f} (goal >= {GOAL})"
    )
    return 0 if ratio >= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
