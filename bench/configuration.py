"""Benchmark: a configuration change to a group of N devices against the raw writes it needs.

In a dedicated database (``fleetops_bench_configuration``): one profile version with a
configuration schema, N active devices in one static group, and every device already at
version 1. Then, in the same run:

- *raw*: the writes the change cannot avoid, with everything computed beforehand: N
  ``ConfigurationVersion`` rows, N ``DeviceConfigurationState`` rows updated and N
  ``Downlink`` rows (``bulk_create`` of prepared objects, one transaction, rolled back);
- *execute*: ``change_request_execute`` of a ``configuration`` request setting a value on the
  group layer: layer write, the layers of the N devices read per batch, N documents merged,
  rendered (a ``{{ device.serial }}`` variable) and validated against the schema, N versions,
  the state upsert, N retained ``config/desired`` downlinks (rolled back too);
- *validate*: ``change_request_create`` of the same request (every device's resulting
  document checked against the schema) and *preview* of its first 50 devices, reported only.

Prints both times and the ratio execute / raw (goal <= 2.5). Best of two rounds each.

Usage: python bench/configuration.py [--scale quick|full] [--devices N]
       (quick = 10,000 devices, full = 50,000)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
DATABASE = "fleetops_bench_configuration"
SCALES = {"quick": 10_000, "full": 50_000}
GOAL = 2.5
SCHEMA = {
    "type": "object",
    "properties": {
        "brightness": {"type": "integer", "minimum": 0, "maximum": 100, "default": 50},
        "hostname": {"type": "string", "default": "{{ device.serial }}.signs.example"},
        "network": {"type": "object", "properties": {"apn": {"type": "string"}}},
    },
}


class Rollback(Exception):
    pass


def use_bench_database() -> None:
    from bench import registry_data as data

    base, _ = data.admin_url()
    data.recreate_database(DATABASE)
    os.environ["DATABASE_URL"] = f"{base}/{DATABASE}"


def build(devices: int) -> dict[str, Any]:
    from django.core.management import call_command
    from django.db import connection

    from apps.accounts import services
    from apps.accounts.models import Organization
    from apps.configuration import services as configuration
    from apps.core.actors import SYSTEM
    from apps.devices.models import Device, DeviceGroup, GroupMembership
    from apps.profiles.models import DeviceProfile, ProfileVersion

    call_command("migrate", verbosity=0)
    platform = services.organization_create(actor=SYSTEM, name="Platform", parent=None)
    acme = services.organization_create(
        actor=SYSTEM, name="Acme", parent=platform, kind=Organization.Kind.MANUFACTURER
    )
    profile = DeviceProfile.objects.create(organization=acme, name="Sign", slug="sign")
    version = ProfileVersion.objects.create(profile=profile, number=1, configuration_schema=SCHEMA)
    rows = Device.objects.bulk_create(
        (
            Device(
                organization=acme,
                manufacturer=acme,
                profile_version=version,
                serial=f"SN-{n:07d}",
                state="active",
            )
            for n in range(devices)
        ),
        batch_size=5000,
    )
    group = DeviceGroup.objects.create(organization=acme, name="lobby")
    GroupMembership.objects.bulk_create(
        (GroupMembership(group=group, device=device) for device in rows), batch_size=5000
    )
    from django.db import transaction

    with transaction.atomic():  # everyone at version 1 (and its downlink, as if published)
        configuration.recompute(device_ids=[d.pk for d in rows], actor=SYSTEM)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE devices_downlink SET state = 'published'")
        cursor.execute("VACUUM ANALYZE")
    return {"organization": acme, "group": group, "devices": rows}


def raw(world: dict[str, Any]) -> float:
    """The unavoidable writes, prepared beforehand."""
    import orjson
    from django.db import connection, transaction
    from django.utils import timezone

    from apps.configuration.documents import canonical_checksum
    from apps.configuration.models import ConfigurationVersion
    from apps.devices.models import Downlink

    prepared = []
    for device in world["devices"]:
        document = {"brightness": 70, "hostname": f"{device.serial}.signs.example"}
        prepared.append((device, document, canonical_checksum(document)))
    now = timezone.now()
    started = time.perf_counter()
    try:
        with transaction.atomic():
            ConfigurationVersion.objects.bulk_create(
                ConfigurationVersion(
                    organization_id=d.organization_id, device=d, version=2, checksum=c, document=doc
                )
                for d, doc, c in prepared
            )
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE configuration_deviceconfigurationstate s SET desired_version = 2, "
                    "desired_checksum = v.checksum, desired_at = %s FROM unnest(%s::uuid[], "
                    "%s::text[]) AS v(device_id, checksum) WHERE s.device_id = v.device_id",
                    [now, [str(d.pk) for d, _, _ in prepared], [c for _, _, c in prepared]],
                )
            Downlink.objects.bulk_create(
                Downlink(
                    organization_id=d.organization_id,
                    device=d,
                    topic=f"devices/{d.pk}/config/desired",
                    payload=orjson.dumps({"version": 2, "checksum": c, "configuration": doc}),
                    retain=True,
                    ref_type="configuration",
                    ref_id=f"{d.pk}:2",
                )
                for d, doc, c in prepared
            )
            elapsed = time.perf_counter() - started
            raise Rollback
    except Rollback:
        pass
    return elapsed


def request_spec(world: dict[str, Any]) -> dict[str, Any]:
    group = world["group"]
    return {
        "operation": "set",
        "layer": "group",
        "layer_id": str(group.pk),
        "values": {"brightness": 70},
    }


def through_execute(world: dict[str, Any]) -> tuple[float, float, float, int]:
    from django.db import transaction
    from django.utils import timezone

    from apps.changes import execution, selectors
    from apps.changes import services as change_services
    from apps.configuration.models import ConfigurationVersion
    from apps.core.actors import SYSTEM

    try:
        with transaction.atomic():
            started = time.perf_counter()
            request = change_services.change_request_create(
                actor=SYSTEM,
                organization=world["organization"],
                kind="configuration",
                title="bench",
                spec=request_spec(world),
                target={"group": str(world["group"].pk)},
                expires_at=timezone.now() + timedelta(hours=1),
            )
            validated = time.perf_counter() - started
            started = time.perf_counter()
            selectors.change_request_preview(actor=SYSTEM, request=request)
            previewed = time.perf_counter() - started
            started = time.perf_counter()
            execution.change_request_execute(actor=SYSTEM, request=request)
            executed = time.perf_counter() - started
            made = ConfigurationVersion.objects.filter(change_request=request).count()
            raise Rollback
    except Rollback:
        pass
    return validated, previewed, executed, made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="quick")
    parser.add_argument("--devices", type=int, default=0)
    arguments = parser.parse_args()
    devices = arguments.devices or SCALES[arguments.scale]
    use_bench_database()
    import django

    django.setup()
    from apps.devices import downlinks

    downlinks._wake = lambda: None  # type: ignore[attr-defined]  # timed here, not published
    world = build(devices)
    raw_times, runs = [], []
    for _ in range(2):
        raw_times.append(raw(world))
        runs.append(through_execute(world))
    raw_best = min(raw_times)
    validated, previewed, executed, made = min(runs, key=lambda run: run[2])
    assert made == devices, made
    ratio = executed / raw_best
    print(f"devices={devices} load average={os.getloadavg()[0]:.1f}")
    print(
        f"configuration change to a group: execute={executed:.2f} s "
        f"({devices / executed:,.0f} devices/s) raw writes={raw_best:.2f} s "
        f"ratio execute/raw={ratio:.2f} (goal <= {GOAL}); "
        f"create+validate={validated:.2f} s, preview of 50={previewed * 1000:.0f} ms"
    )
    return 0 if ratio <= GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
