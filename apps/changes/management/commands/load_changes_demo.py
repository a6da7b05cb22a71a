"""``manage.py load_changes_demo``: change requests for the ``make run`` demo.

Run after ``load_demo``, ``load_fleet_demo`` and ``load_connectivity_demo``. As Acme's operator
(``operator@acme.example``) it creates:

- **a pending approval**: ``factory_reset`` (a critical command of the Courier Robot catalog) for
  Northwind's couriers, waiting for Acme's approver (``approver@acme.example``: Approvals);
- **a bulk command that completes by itself**: ``ping`` to every courier that is online when it
  runs, executed now and scheduled a minute and a half ahead, so the simulated fleet has
  enrolled and connected by then; the agents answer and the request ends ``completed``.

Idempotent: a second run finds the requests by title and creates nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from apps.accounts.actors import actor_for_user
from apps.accounts.models import Organization, User
from apps.changes.execution import change_request_execute
from apps.changes.models import ChangeRequest
from apps.changes.services import change_request_create
from apps.profiles.models import DeviceProfile

PENDING = "Factory reset of Northwind's couriers"
BULK = "Ping every online courier"


class Command(BaseCommand):
    help = "Demo change requests: one waiting for approval, one bulk command (make run)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--delay", type=int, default=90, help="seconds before the bulk command runs"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        acme = Organization.objects.filter(slug="acme-robotics").first()
        northwind = Organization.objects.filter(slug="northwind-hospitals").first()
        profile = DeviceProfile.objects.filter(organization=acme, slug="courier-robot").first()
        operator = User.objects.filter(email="operator@acme.example").first()
        if acme is None or northwind is None or profile is None or operator is None:
            raise CommandError("Run `manage.py load_demo` and `load_fleet_demo` first.")
        actor = actor_for_user(operator, source="system")
        couriers = {"profile": [str(profile.pk)]}
        if not ChangeRequest.objects.filter(organization=northwind, title=PENDING).exists():
            change_request_create(
                actor=actor,
                organization=northwind,
                kind="command",
                title=PENDING,
                description="Wipes the couriers' maps before the new floor plan is loaded.",
                spec={"command": "factory_reset", "arguments": {}},
                target={"filter": couriers},
            )
            self.stdout.write(f"Pending approval: {PENDING!r}.")
        if ChangeRequest.objects.filter(organization=northwind, title=BULK).exists():
            self.stdout.write("Demo change requests already loaded.")
            return
        request = change_request_create(
            actor=actor,
            organization=northwind,
            kind="command",
            title=BULK,
            spec={"command": "ping", "arguments": {}, "timeout_s": 60},
            target={"filter": {**couriers, "connectivity": ["online"]}},
            run_at=timezone.now() + dt.timedelta(seconds=options["delay"]),
        )
        change_request_execute(actor=actor, request=request)
        self.stdout.write(
            self.style.SUCCESS(f"Bulk command {BULK!r} runs in {options['delay']} s.")
        )
