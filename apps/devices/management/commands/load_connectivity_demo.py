"""``manage.py load_connectivity_demo``: zero-touch provisioning for the demo's simulated fleet.

On top of ``load_fleet_demo``: an enrollment policy of Acme Robotics for its courier robots
(claim token, auto-activate, devices land in Northwind Hospitals), a provisioning template for
the profile, and a claim token written to ``--token-file`` (0600) for ``python -m agent
simulate`` to use. ``make run`` starts that simulator (deploy/run.sh), so the portal shows
devices enrolling themselves and coming online live. Idempotent: an existing policy and a token
file that still names a live claim token are kept.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from apps.accounts import tokens
from apps.accounts.models import Organization
from apps.core.actors import system_actor
from apps.devices.choices import EnrollmentMethod, FirstContact
from apps.devices.enrollment_policies import claim_token_create, policy_create
from apps.devices.models import ClaimToken, EnrollmentPolicy
from apps.devices.pki import authorities
from apps.profiles.models import DeviceProfile, ProvisioningTemplate
from apps.profiles.provisioning import template_create

POLICY = "Courier robots (zero-touch demo)"
TEMPLATE = "Courier robot defaults"


class Command(BaseCommand):
    help = "Enrollment policy, provisioning template and claim token for the simulated fleet."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--token-file", type=Path, default=Path("var/demo/claim-token"))

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        acme = Organization.objects.filter(slug="acme-robotics").first()
        customer = Organization.objects.filter(slug="northwind-hospitals").first()
        profile = DeviceProfile.objects.filter(organization=acme, slug="courier-robot").first()
        if acme is None or customer is None or profile is None:
            raise CommandError("Run `manage.py load_demo` and `load_fleet_demo` first.")
        actor = system_actor("demo loader", source="system")
        if not ProvisioningTemplate.objects.filter(organization=acme, name=TEMPLATE).exists():
            template_create(
                actor=actor,
                organization=acme,
                name=TEMPLATE,
                profile=profile,
                configuration={"report_interval_s": 30, "led": "green", "speed_limit": 1.5},
                heartbeat_interval_seconds=30,
                heartbeat_missed_beats=3,
                routing_labels=["demo", "couriers"],
                software={"firmware": "2.4.1"},
            )
        policy = EnrollmentPolicy.objects.filter(organization=acme, name=POLICY).first()
        if policy is None:
            policy = policy_create(
                actor=actor,
                organization=acme,
                name=POLICY,
                method=EnrollmentMethod.CLAIM_TOKEN,
                target_organization=customer,
                profile=profile,
                first_contact=FirstContact.ACTIVATE,
            )
        # The customer's CA exists before its first device, so broker-sync has put its CRL in the
        # broker by the time the simulator's devices connect (no refused first connections).
        authorities.intermediate(customer)
        token_file: Path = options["token_file"]
        if self._live_token(token_file, policy):
            self.stdout.write(f"Claim token kept in {token_file}.")
            return
        issued = claim_token_create(
            actor=actor,
            policy=policy,
            expires_at=timezone.now() + dt.timedelta(days=365),
            max_uses=10_000,
            label="make run simulator",
        )
        token_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(issued.token + "\n")
        self.stdout.write(self.style.SUCCESS(f"Claim token for {POLICY!r} in {token_file}."))

    def _live_token(self, token_file: Path, policy: EnrollmentPolicy) -> bool:
        if not token_file.exists():
            return False
        prefix = tokens.parse_prefix(token_file.read_text().strip(), "claim")
        return (
            prefix is not None
            and ClaimToken.objects.filter(
                policy=policy, prefix=prefix, revoked_at=None, expires_at__gt=timezone.now()
            ).exists()
        )
