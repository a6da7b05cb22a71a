"""Django side of ``bench/ingest.py``: the bench database's world, its broker, the workers'
stats and what the telemetry table holds."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.ingest_mqtt import Broker

SCHEMA: dict[str, Any] = {
    "metrics": [
        {"name": "temperature", "type": "float", "unit": "°C", "min": -40, "max": 125},
        {"name": "humidity", "type": "float", "unit": "%", "min": 0, "max": 100},
        {"name": "battery_pct", "type": "float", "unit": "%", "min": 0, "max": 100},
    ]
}


def build_world(count: int) -> list[str]:
    """Migrate; a manufacturer and its customer, a profile with ``SCHEMA``, two alert rules on
    it (evaluated on every sample; they never fire: no alert writes skew the figures) and
    ``count`` active devices of the customer. Returns the device ids."""
    from django.core.management import call_command

    from apps.accounts import services
    from apps.accounts.models import Organization
    from apps.core.actors import SYSTEM
    from apps.devices.choices import DeviceState
    from apps.devices.models import Device
    from apps.profiles import services as profiles
    from apps.profiles.models import ProfileVersion
    from apps.telemetry.alerting.services import rule_create

    call_command("migrate", verbosity=0)
    kind = Organization.Kind
    platform = services.organization_create(
        actor=SYSTEM, name="Platform", parent=None, kind=kind.PLATFORM
    )
    maker = services.organization_create(
        actor=SYSTEM, name="Acme Sensors", parent=platform, kind=kind.MANUFACTURER
    )
    customer = services.organization_create(actor=SYSTEM, name="Northwind", parent=maker)
    profile = profiles.profile_create(
        actor=SYSTEM, organization=maker, name="Thermo", telemetry_schema=SCHEMA
    )
    version = ProfileVersion.objects.get(profile=profile, number=1)
    for name, condition in (
        ("Overheating", {"metric": "temperature", "operator": "gt", "value": 120}),
        ("Battery empty", {"metric": "battery_pct", "operator": "lt", "value": -1}),
    ):
        rule_create(
            actor=SYSTEM,
            organization=maker,
            name=name,
            kind="threshold",
            condition=condition,
            profile=profile,
        )
    devices = Device.objects.bulk_create(
        Device(
            organization=customer,
            manufacturer=maker,
            profile_version=version,
            serial=f"TH-{number:06d}",
            state=DeviceState.ACTIVE,
        )
        for number in range(count)
    )
    return [str(device.pk) for device in devices]


@contextlib.contextmanager
def broker(directory: Path) -> Iterator[Broker]:
    """A Mosquitto running the platform's generated configuration on free ports."""
    from tests.broker_support import MqttBroker, free_port

    shutil.rmtree(directory, ignore_errors=True)
    running = MqttBroker(
        directory=directory,
        device_port=free_port(),
        token_port=free_port(),
        platform_port=free_port(),
        platform_username="fleetops-bench",
        platform_password=secrets.token_urlsafe(24),
    )
    running.write_config()
    running.start()
    try:
        yield Broker(
            running.host,
            running.platform_port,
            running.platform_username,
            running.platform_password,
        )
    finally:
        running.stop()


def worker_documents(names: list[str]) -> list[dict[str, Any]]:
    """The named workers' latest stats documents (those that reported)."""
    from apps.telemetry import ingest_stats

    return [document for document in ingest_stats.workers() if document["name"] in names]


def stored_counts(boot: int) -> tuple[int, int, int]:
    """(telemetry rows, distinct (device, boot, seq), dead letters) of one run's ``boot``."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*), count(DISTINCT (device_id, seq)) FROM telemetry_sample "
            "WHERE kind = 1 AND boot = %s",
            [boot],
        )
        rows, distinct = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM telemetry_deadletter")
        (dead,) = cursor.fetchone()
    return rows, distinct, dead


def per_device_check(
    boot: int, devices: int, per_device: int, *, timeout: float
) -> tuple[bool, str]:
    """Wait until ``devices * per_device`` rows of ``boot`` are stored, then check that every
    device has exactly seq 1..per_device, each once."""
    from django.db import connection

    deadline = time.monotonic() + timeout
    total = devices * per_device
    while stored_counts(boot)[0] < total and time.monotonic() < deadline:
        time.sleep(0.5)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM (SELECT device_id FROM telemetry_sample "
            "WHERE kind = 1 AND boot = %s GROUP BY device_id HAVING count(*) = %s "
            "AND count(DISTINCT seq) = %s AND min(seq) = 1 AND max(seq) = %s) complete",
            [boot, per_device, per_device, per_device],
        )
        (complete,) = cursor.fetchone()
    rows, distinct, dead = stored_counts(boot)
    detail = f"{rows:,} rows, {distinct:,} distinct, {complete:,}/{devices:,} devices complete"
    return rows == distinct == total and complete == devices and dead == 0, detail
