"""``manage.py load_demo``: a small, idempotent demo tenant tree with one login per role.

Organizations and memberships are written through ``apps.accounts.services`` with a system
actor, so the audit log and the outbox hold their rows like any other write. Anything that
already exists (matched by slug or email) is left exactly as it is: a second run changes
nothing, and a password changed by hand stays changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.accounts import services
from apps.accounts.models import Membership, Organization, User
from apps.accounts.roles import Role
from apps.core import audit
from apps.core.actors import Actor, system_actor

DEMO_PASSWORD = "fleetops-demo"  # a documented demo credential; the command needs DEBUG
SUPERUSER_EMAIL = "admin@fleetops.example"


@dataclass(frozen=True)
class DemoOrganization:
    slug: str
    name: str
    kind: str
    parent: str | None


@dataclass(frozen=True)
class DemoLogin:
    email: str
    full_name: str
    organization: str  # slug
    role: str


ORGANIZATIONS = (
    DemoOrganization("fleetops", "Fleetops", Organization.Kind.PLATFORM, None),
    DemoOrganization("acme-robotics", "Acme Robotics", Organization.Kind.MANUFACTURER, "fleetops"),
    DemoOrganization(
        "globex-signage", "Globex Signage", Organization.Kind.MANUFACTURER, "fleetops"
    ),
    DemoOrganization(
        "northwind-hospitals", "Northwind Hospitals", Organization.Kind.CUSTOMER, "acme-robotics"
    ),
    DemoOrganization(
        "northwind-general",
        "Northwind General Hospital",
        Organization.Kind.SITE,
        "northwind-hospitals",
    ),
)
LOGINS = (
    *(
        DemoLogin(f"{role}@acme.example", f"Acme {role.label}", "acme-robotics", role)
        for role in Role
    ),
    DemoLogin("owner@globex.example", "Globex Owner", "globex-signage", Role.OWNER),
    DemoLogin("owner@northwind.example", "Northwind Owner", "northwind-hospitals", Role.OWNER),
)


@dataclass
class Created:
    organizations: int = 0
    users: int = 0
    memberships: int = 0


class Command(BaseCommand):
    help = "Create the demo organizations and one login per role (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--password", default=DEMO_PASSWORD, help="password for new logins")
        parser.add_argument(
            "--force", action="store_true", help="run even though DEBUG is off (never in prod)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError("load_demo creates known passwords: it runs only with DEBUG on.")
        actor = system_actor(label="load_demo", source="system")
        password: str = options["password"]
        created = Created()
        with transaction.atomic():
            organizations = self.ensure_organizations(actor, created)
            self.ensure_user(actor, created, SUPERUSER_EMAIL, "Platform Admin", password, True)
            for login in LOGINS:
                user = self.ensure_user(actor, created, login.email, login.full_name, password)
                organization = organizations[login.organization]
                if not Membership.objects.filter(user=user, organization=organization).exists():
                    services.membership_create(
                        actor=actor, organization=organization, user=user, role=login.role
                    )
                    created.memberships += 1
        self.report(organizations, created, password)

    def ensure_organizations(self, actor: Actor, created: Created) -> dict[str, Organization]:
        organizations: dict[str, Organization] = {}
        for spec in ORGANIZATIONS:
            organization = Organization.objects.filter(slug=spec.slug).first()
            if organization is None:
                organization = services.organization_create(
                    actor=actor,
                    name=spec.name,
                    parent=organizations[spec.parent] if spec.parent else None,
                    kind=spec.kind,
                    slug=spec.slug,
                )
                created.organizations += 1
            organizations[spec.slug] = organization
        return organizations

    def ensure_user(
        self,
        actor: Actor,
        created: Created,
        email: str,
        full_name: str,
        password: str,
        superuser: bool = False,
    ) -> User:
        """The user with ``email`` (created if missing) with a verified primary address."""
        user = User.objects.filter(email=email).first()
        if user is None:
            make = User.objects.create_superuser if superuser else User.objects.create_user
            user = make(email, password, full_name=full_name)
            audit.record(
                actor=actor,
                action="user.create",
                obj=user,
                changes={
                    "email": [None, user.email],
                    "full_name": [None, full_name],
                    "is_staff": [None, user.is_staff],
                    "is_superuser": [None, user.is_superuser],
                },
            )
            created.users += 1
        EmailAddress.objects.get_or_create(
            user=user, email=user.email, defaults={"verified": True, "primary": True}
        )
        return user

    def report(
        self, organizations: dict[str, Organization], created: Created, password: str
    ) -> None:
        names = {slug: organization.name for slug, organization in organizations.items()}
        rows = [(SUPERUSER_EMAIL, "superuser", "(platform staff: everything)")]
        rows += [(login.email, str(login.role), names[login.organization]) for login in LOGINS]
        width = max(len(row[0]) for row in rows)
        self.stdout.write(
            f"Demo data: created {created.organizations} organizations, {created.users} users, "
            f"{created.memberships} memberships."
        )
        self.stdout.write("")
        self.stdout.write(f"{'login':<{width}}  {'role':<10}  organization")
        for email, role, organization in rows:
            self.stdout.write(f"{email:<{width}}  {role:<10}  {organization}")
        self.stdout.write("")
        self.stdout.write(f"Password for every demo login: {password}")
        self.stdout.write("(logins that already existed keep the password they have)")
