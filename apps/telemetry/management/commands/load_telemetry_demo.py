"""``manage.py load_telemetry_demo``: alert rules for the demo's simulated fleet (idempotent).

The simulated couriers (``make run``: ``python -m agent simulate`` with power cuts) enroll into
Northwind Hospitals. These rules, owned by Northwind, turn what they do into alerts: a robot
going offline (a power cut), a low battery, a warm ward, and a fleet-wide share offline. Each
alert notifies Northwind's people in the portal (the bell) and by email (the console in
development), through the outbox. Run after ``load_demo``, ``load_fleet_demo`` and
``load_connectivity_demo``; a second run changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import Organization
from apps.core.actors import system_actor
from apps.profiles.models import DeviceProfile
from apps.telemetry.alerting.services import rule_create
from apps.telemetry.models import AlertRule

CUSTOMER = "northwind-hospitals"
RULES: list[dict[str, Any]] = [
    {
        "name": "Robot offline",
        "kind": "state_change",
        "condition": {"field": "connectivity", "to": "offline", "from": ""},
        "severity": "major",
        "description": "A courier lost its connection (the demo cuts one's power every 2 min).",
    },
    {
        "name": "Battery low",
        "kind": "threshold",
        "condition": {"metric": "battery_pct", "operator": "lt", "value": 20},
        "severity": "warning",
        "open_after_seconds": 60,
        "clear_after_seconds": 60,
    },
    {
        "name": "Ward too warm",
        "kind": "threshold",
        "condition": {"metric": "temperature_c", "operator": "gt", "value": 26.5},
        "severity": "minor",
        "open_after_seconds": 120,
        "clear_after_seconds": 120,
    },
    {
        "name": "Courier fleet offline",
        "kind": "fleet_offline",
        "condition": {"percent": 20, "minutes": 10},
        "severity": "critical",
        "profile": "courier-robot",
    },
]


class Command(BaseCommand):
    help = "Create the demo's alert rules for the simulated fleet (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        customer = Organization.objects.filter(slug=CUSTOMER).first()
        if customer is None:
            raise CommandError("Run `manage.py load_demo` and `load_fleet_demo` first.")
        actor = system_actor("demo loader", source="system")
        created = 0
        for spec in RULES:
            if AlertRule.objects.filter(organization=customer, name=spec["name"]).exists():
                continue
            fields = dict(spec)
            if "profile" in fields:
                fields["profile"] = DeviceProfile.objects.get(slug=fields["profile"])
            rule_create(actor=actor, organization=customer, **fields)
            created += 1
        self.stdout.write(f"Alert rules: {created} created, {len(RULES) - created} kept.")
