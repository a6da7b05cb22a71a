"""``manage.py load_fleet_demo``: a simulated fleet on top of ``load_demo``'s organizations.

Profiles, a few thousand devices (imported through the real bulk-import path), states, static
and dynamic groups, a pending transfer and a replaced device. Everything goes through the
services with a system actor, so the audit log, the outbox and the timelines are populated like
any real use. Idempotent: a second run finds the demo profile and changes nothing.
"""

from __future__ import annotations

import csv
import io
import json
import random
from typing import Any

from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.accounts.models import Organization
from apps.core.actors import Actor, system_actor
from apps.devices import groups, imports, replacement, services, transfers
from apps.devices.models import Device
from apps.profiles.models import DeviceProfile
from apps.profiles.services import profile_create

COURIER_TELEMETRY = {
    "metrics": [
        {"name": "battery", "type": "float", "unit": "%", "min": 0, "max": 100},
        {
            "name": "temperature",
            "type": "float",
            "unit": "°C",
            "source": "env.temp_f",
            "convert": {"from": "°F", "to": "°C"},
        },
        {"name": "speed", "type": "float", "unit": "m/s", "min": 0, "max": 5},
        # what the reference agent's simulated sensors report (agent/metrics.py)
        {"name": "temperature_c", "type": "float", "unit": "°C", "min": -40, "max": 85},
        {"name": "humidity_pct", "type": "float", "unit": "%", "min": 0, "max": 100},
        {"name": "battery_pct", "type": "float", "unit": "%", "min": 0, "max": 100},
        {"name": "rssi_dbm", "type": "float", "unit": "dBm", "min": -130, "max": 0},
        {"name": "cpu_pct", "type": "float", "unit": "%", "min": 0, "max": 100},
    ]
}
COURIER_COMMANDS = [
    {"name": "reboot", "schema": {"type": "object"}, "criticality": "normal"},
    {
        "name": "set_log_level",
        "criticality": "normal",
        "schema": {
            "type": "object",
            "properties": {"level": {"enum": ["debug", "info", "warn"]}},
            "required": ["level"],
        },
    },
    {"name": "factory_reset", "schema": {"type": "object"}, "criticality": "critical"},
    # built into the reference agent (agent/commands.py): the simulated fleet answers them
    {"name": "ping", "schema": {"type": "object"}, "criticality": "normal"},
    {
        "name": "upload_logs",
        "schema": {
            "type": "object",
            "properties": {"lines": {"type": "integer", "minimum": 1, "maximum": 200}},
        },
        "criticality": "normal",
    },
]
ATTRIBUTES = {
    "type": "object",
    "properties": {"color": {"enum": ["red", "white", "blue"]}, "payload_kg": {"type": "number"}},
}
CITIES = {"eu": (48.85, 2.35), "us": (40.71, -74.0)}


def _rows(prefix: str, profile: str, count: int, state: str, seed: int) -> list[dict[str, Any]]:
    chooser = random.Random(seed)
    rows = []
    for number in range(count):
        region = chooser.choice(("eu", "us"))
        lat, lon = CITIES[region]
        tags = [region] + (["beta"] if number % 17 == 0 else [])
        rows.append(
            {
                "serial": f"{prefix}-{number:05d}",
                "profile": profile,
                "name": f"{prefix.title()} {number}",
                "tags": ";".join(tags),
                "attributes": json.dumps({"color": chooser.choice(["red", "white", "blue"])}),
                "latitude": round(lat + chooser.uniform(-0.3, 0.3), 5),
                "longitude": round(lon + chooser.uniform(-0.3, 0.3), 5),
                "state": state,
            }
        )
    return rows


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


class Command(BaseCommand):
    help = "Load a simulated fleet (profiles, devices, groups, a transfer, a replacement)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--scale", type=int, default=1, help="multiply device counts")

    def handle(self, *args: Any, **options: Any) -> None:
        organizations = {
            o.slug: o
            for o in Organization.objects.filter(
                slug__in=[
                    "acme-robotics",
                    "globex-signage",
                    "northwind-hospitals",
                    "northwind-general",
                ]
            )
        }
        if len(organizations) != 4:
            raise CommandError("Run `manage.py load_demo` first (organizations are missing).")
        acme = organizations["acme-robotics"]
        if DeviceProfile.objects.filter(organization=acme, slug="courier-robot").exists():
            self.stdout.write("Fleet demo already loaded; nothing to do.")
            return
        actor = system_actor("demo loader", source="system")
        scale = max(1, options["scale"])
        self.load_profiles(actor, organizations)
        self.load_devices(actor, organizations, scale)
        self.load_story(actor, organizations)
        self.stdout.write(
            self.style.SUCCESS(
                f"Fleet demo: {Device.objects.count()} devices in "
                f"{Device.objects.values('organization').distinct().count()} organizations."
            )
        )

    def load_profiles(self, actor: Actor, organizations: dict[str, Organization]) -> None:
        profile_create(
            actor=actor,
            organization=organizations["acme-robotics"],
            name="Courier Robot",
            slug="courier-robot",
            description="Autonomous hospital courier.",
            hardware_revisions=["A1", "B2"],
            capabilities=["navigation", "ota"],
            attributes_schema=ATTRIBUTES,
            telemetry_schema=COURIER_TELEMETRY,
            command_catalog=COURIER_COMMANDS,
            heartbeat_interval_seconds=30,
        )
        profile_create(
            actor=actor,
            organization=organizations["acme-robotics"],
            name="Disinfection Unit",
            slug="disinfection-unit",
            attributes_schema=ATTRIBUTES,
        )
        profile_create(
            actor=actor,
            organization=organizations["globex-signage"],
            name="Signage Player",
            slug="signage-player",
            connection_type="both",
            attributes_schema=ATTRIBUTES,
            heartbeat_interval_seconds=120,
        )

    def import_rows(
        self, actor: Actor, organization: Organization, rows: list[dict[str, Any]], name: str
    ) -> None:
        upload = ContentFile(_csv(rows), name=name)
        with transaction.atomic():
            job = imports.import_start(actor=actor, organization=organization, upload=upload)
        job = imports.import_run(job_id=job.pk)  # the queued task finds it done and skips it
        self.stdout.write(f"  {name}: {job.result}")

    def load_devices(
        self, actor: Actor, organizations: dict[str, Organization], scale: int
    ) -> None:
        self.stdout.write("Importing the simulated fleet...")
        self.import_rows(
            actor,
            organizations["acme-robotics"],
            _rows("courier", "courier-robot", 1200 * scale, "active", 1),
            "acme-couriers.csv",
        )
        self.import_rows(
            actor,
            organizations["acme-robotics"],
            _rows("disinfector", "disinfection-unit", 300 * scale, "escrow", 2),
            "acme-escrow.csv",
        )
        self.import_rows(
            actor,
            organizations["northwind-hospitals"],
            _rows("nw-courier", "courier-robot", 600 * scale, "active", 3),
            "northwind-couriers.csv",
        )
        self.import_rows(
            actor,
            organizations["globex-signage"],
            _rows("screen", "signage-player", 1000 * scale, "active", 4),
            "globex-screens.csv",
        )

    def load_story(self, actor: Actor, organizations: dict[str, Organization]) -> None:
        acme, northwind = organizations["acme-robotics"], organizations["northwind-hospitals"]
        couriers = Device.objects.filter(organization=acme, serial__startswith="courier-")
        for device in couriers.order_by("serial")[:6]:
            services.device_transition(actor=actor, device=device, transition="enter_maintenance")
        for device in couriers.order_by("serial")[6:8]:
            services.device_transition(actor=actor, device=device, transition="suspend")
        pilot = groups.group_create(
            actor=actor,
            organization=acme,
            name="Pilot fleet",
            description="Couriers testing new navigation.",
            kind="static",
            filter={},
        )
        groups.group_add_devices(
            actor=actor,
            group=pilot,
            device_ids=list(couriers.order_by("serial").values_list("pk", flat=True)[10:30]),
        )
        groups.group_create(
            actor=actor,
            organization=acme,
            name="EU couriers",
            description="Every courier tagged eu.",
            kind="dynamic",
            filter={"tags_all": ["eu"], "search": "courier"},
        )
        groups.group_create(
            actor=actor,
            organization=organizations["globex-signage"],
            name="Beta screens",
            description="",
            kind="dynamic",
            filter={"tags_any": ["beta"]},
        )
        escrow = Device.objects.filter(organization=acme, state="escrow").order_by("serial")
        transfers.transfer_create(
            actor=actor,
            device=escrow[0],
            to_organization=northwind,
            note="Second floor delivery robots.",
        )
        failed = Device.objects.filter(organization=northwind).order_by("serial").first()
        successor = escrow[1]
        transfers.transfer_accept(
            actor=actor,
            transfer=transfers.transfer_create(
                actor=actor, device=successor, to_organization=northwind, note="Spare unit."
            ),
        )
        assert failed is not None
        successor.refresh_from_db()
        replacement.device_replace(actor=actor, old=failed, new=successor)
