"""Data for the registry benchmarks: databases, the organization tree, profiles, users, groups,
and devices loaded with COPY.

100 organizations: the platform, 4 manufacturers with 95 customers below them (40/25/20/10).
Devices go 40/30/20/10% to the manufacturers; 10% stay in escrow at the manufacturer, the rest
spread over its customers with a long tail (the first customer is the largest), except the first
manufacturer's last customer, a newcomer with 20 devices whatever the fleet size. States are
mostly active; every device has a region tag (eu 45%, us 35%, apac 20%) plus a few optional
tags, typed attributes, a firmware version and a connectivity state. Ids are UUIDv7 whose
timestamps follow ``created_at`` over two years, as a real fleet's would.
"""

from __future__ import annotations

import io
import json
import os
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MANUFACTURERS: tuple[tuple[str, int, float], ...] = (
    ("Acme Devices", 40, 0.40),  # name, customers, share of the fleet
    ("Globex", 25, 0.30),
    ("Initech", 20, 0.20),
    ("Umbrella", 10, 0.10),
)
STATES: tuple[tuple[str, int], ...] = (
    ("active", 83),
    ("maintenance", 5),
    ("suspended", 2),
    ("decommissioned", 5),
    ("discovered", 2),
    ("replaced", 3),
)
REGIONS = (("eu", 45), ("us", 35), ("apac", 20))
EXTRA_TAGS = (("lobby", 0.2), ("pos", 0.3), ("beta", 0.05))
FIRMWARE = (("1.8.2", 5), ("1.9.0", 10), ("2.0.1", 25), ("2.1.0", 40), ("2.1.1", 20))
COLORS = ("black", "white", "red", "grey")
BULK_TAG = "wave1"  # carried by exactly ``bulk`` active devices: the bulk transition's rows
GROUPS_PER_ORGANIZATION = 50
NEWCOMER_DEVICES = 20
COLUMNS = (
    "id, created_at, updated_at, serial, name, state, state_changed_at, tags, attributes, "
    "latitude, longitude, inventory, firmware_version, connectivity, last_seen_at, "
    "claim_code_hash, manufacturer_id, organization_id, profile_version_id"
)


@dataclass
class World:
    """What the benchmarks need to know about the generated data."""

    platform: Any
    manufacturers: list[Any]
    customers: dict[uuid.UUID, list[Any]]  # manufacturer id -> its customers
    versions: dict[uuid.UUID, list[uuid.UUID]]  # manufacturer id -> profile version ids
    users: dict[str, Any] = field(default_factory=dict)  # role name -> User

    @property
    def big_customer(self) -> Any:
        """A mid-sized customer of the first manufacturer (about 1% of the fleet)."""
        return self.customers[self.manufacturers[0].id][4]

    @property
    def newcomer(self) -> Any:
        """The first manufacturer's last customer: NEWCOMER_DEVICES devices at any fleet size."""
        return self.customers[self.manufacturers[0].id][-1]


def admin_url() -> tuple[str, str]:
    """(server url without database, the project's database name) from services.env."""
    import environ

    root = Path(__file__).resolve().parent.parent
    environ.Env.read_env(str(root / "var" / "run" / "services.env"), overwrite=False)
    base, _, name = os.environ["DATABASE_URL"].rpartition("/")
    return base, name


def recreate_database(name: str, template: str = "template0") -> None:
    import psycopg

    base, _ = admin_url()
    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')


def add_alias(alias: str, name: str) -> None:
    """A second connection alias to another database of the same server (before first use)."""
    from django.conf import settings

    settings.DATABASES[alias] = {**settings.DATABASES["default"], "NAME": name}


def build_world() -> World:
    """Migrate, then the organizations (through the accounts services), profiles, users and
    device groups. Runs in an empty database."""
    from django.core.management import call_command

    from apps.accounts import services
    from apps.accounts.models import Organization
    from apps.core.actors import SYSTEM

    call_command("migrate", verbosity=0)
    kind = Organization.Kind
    platform = services.organization_create(
        actor=SYSTEM, name="Platform", parent=None, kind=kind.PLATFORM
    )
    world = World(platform=platform, manufacturers=[], customers={}, versions={})
    for name, count, _ in MANUFACTURERS:
        maker = services.organization_create(
            actor=SYSTEM, name=name, parent=platform, kind=kind.MANUFACTURER
        )
        world.manufacturers.append(maker)
        world.customers[maker.id] = [
            services.organization_create(actor=SYSTEM, name=f"{name} customer {i}", parent=maker)
            for i in range(count)
        ]
        world.versions[maker.id] = _profiles(maker)
    _users(world)
    _groups()
    return world


def _profiles(maker: Any) -> list[uuid.UUID]:
    """Three profiles: through ``profile_create`` (version 1 each) when the profiles service
    exists, else as rows with two versions each."""
    from apps.core.actors import SYSTEM
    from apps.profiles.models import DeviceProfile, ProfileVersion

    kinds = ("gateway", "sensor", "kiosk")
    try:
        from apps.profiles.services import profile_create
    except ImportError:
        profiles = DeviceProfile.objects.bulk_create(
            DeviceProfile(organization=maker, name=f"{maker.name} {kind}", slug=kind)
            for kind in kinds
        )
        versions = ProfileVersion.objects.bulk_create(
            ProfileVersion(profile=profile, number=number)
            for profile in profiles
            for number in (1, 2)
        )
        return [version.id for version in versions]
    for kind in kinds:
        profile_create(actor=SYSTEM, organization=maker, name=f"{maker.name} {kind}", slug=kind)
    return list(
        ProfileVersion.objects.filter(profile__organization=maker).values_list("id", flat=True)
    )


def _users(world: World) -> None:
    from apps.accounts import services
    from apps.accounts.models import User
    from apps.accounts.roles import Role
    from apps.core.actors import SYSTEM

    for role, organization in (
        ("platform", world.platform),
        ("manufacturer", world.manufacturers[0]),
        ("customer", world.big_customer),
        ("newcomer", world.newcomer),
    ):
        user = User.objects.create_user(f"{role}@bench.example", password=None)
        services.membership_create(
            actor=SYSTEM, organization=organization, user=user, role=Role.OWNER
        )
        world.users[role] = user


def _groups() -> None:
    from apps.accounts.models import Organization
    from apps.devices.models import DeviceGroup

    DeviceGroup.objects.bulk_create(
        DeviceGroup(organization=organization, name=f"group {i:03d}")
        for organization in Organization.objects.all()
        for i in range(GROUPS_PER_ORGANIZATION)
    )


def grant_groups(user: Any, count: int) -> int:
    """Share ``count`` device groups outside the user's organizations with the user (guardian
    per-object grants, direct foreign-key table). Returns the number of grant rows."""
    from django.contrib.auth.models import Permission
    from django.db import connection

    from apps.accounts.models import Membership
    from apps.devices.models import DeviceGroup, DeviceGroupUserObjectPermission

    permission = Permission.objects.get(
        codename="view_devicegroup", content_type__app_label="devices"
    )
    own = Membership.objects.filter(user=user).values("organization_id")
    groups = DeviceGroup.objects.exclude(organization__in=own).order_by("id")[:count]
    DeviceGroupUserObjectPermission.objects.bulk_create(
        DeviceGroupUserObjectPermission(user=user, permission=permission, content_object=group)
        for group in groups
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE devices_devicegroupuserobjectpermission")
    return DeviceGroupUserObjectPermission.objects.filter(user=user).count()


def _uuid7(milliseconds: int, rng: random.Random) -> uuid.UUID:
    value = (milliseconds & ((1 << 48) - 1)) << 80 | rng.getrandbits(80)
    value = value & ~(0xF << 76) | 0x7 << 76
    value = value & ~(0x3 << 62) | 0x2 << 62
    return uuid.UUID(int=value)


def _owners(world: World, count: int, rng: random.Random) -> list[tuple[Any, Any]]:
    """(manufacturer, owning organization) per device."""
    makers = rng.choices(world.manufacturers, [m[2] for m in MANUFACTURERS], k=count)
    tails = {
        maker.id: [1 / (rank + 1) ** 0.8 for rank in range(len(world.customers[maker.id]))]
        for maker in world.manufacturers
    }
    tails[world.manufacturers[0].id][-1] = 0  # the newcomer: a fixed handful, below
    owners = []
    for maker in makers:
        if rng.random() < 0.10:
            owners.append((maker, maker))
        else:
            customers = world.customers[maker.id]
            owners.append((maker, rng.choices(customers, tails[maker.id])[0]))
    spacing = max(1, count // NEWCOMER_DEVICES)
    for i in range(0, min(count, spacing * NEWCOMER_DEVICES), spacing):
        owners[i] = (world.manufacturers[0], world.newcomer)
    return owners


def device_rows(world: World, count: int, bulk: int, seed: int = 7) -> io.StringIO:
    """``count`` devices in COPY text format; the first ``bulk`` active ones carry BULK_TAG."""
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=730)
    step = (now - timedelta(days=1) - start) / max(count, 1)
    states = rng.choices([s for s, _ in STATES], [w for _, w in STATES], k=count)
    regions = rng.choices([r for r, _ in REGIONS], [w for _, w in REGIONS], k=count)
    firmware = rng.choices([f for f, _ in FIRMWARE], [w for _, w in FIRMWARE], k=count)
    out, tagged = io.StringIO(), 0
    for i, (maker, owner) in enumerate(_owners(world, count, rng)):
        created = start + step * i
        state = "escrow" if owner is maker else states[i]
        tags = [regions[i]] + [tag for tag, share in EXTRA_TAGS if rng.random() < share]
        if state == "active" and tagged < bulk:
            tags.append(BULK_TAG)
            tagged += 1
        online = state == "active" and rng.random() < 0.85
        seen = (now - timedelta(seconds=rng.randrange(60 if online else 864_000))).isoformat()
        attributes = json.dumps({"color": rng.choice(COLORS), "floor": rng.randrange(12)})
        out.write(
            f"{_uuid7(int(created.timestamp() * 1000), rng)}\t{created.isoformat()}\t"
            f"{created.isoformat()}\tSN-{maker.slug[:8]}-{i:08d}\t"
            f"Device {i}\t{state}\t{created.isoformat()}\t{{{','.join(tags)}}}\t{attributes}\t"
            f"{rng.uniform(-60, 60):.5f}\t{rng.uniform(-170, 170):.5f}\t{{}}\t{firmware[i]}\t"
            f"{'online' if online else 'offline'}\t{seen}\t\t{maker.id}\t{owner.id}\t"
            f"{rng.choice(world.versions[maker.id])}\n"
        )
    return out


def _fill_other_columns(cursor: Any, connection: Any) -> list[str]:
    """Give every NOT NULL column of devices_device that the COPY leaves out (fields added after
    this loader) its model default as a column default for the load. Returns those columns."""
    from psycopg import sql

    from apps.devices.models import Device

    listed = {name.strip() for name in COLUMNS.split(",")}
    filled = []
    for model_field in Device._meta.concrete_fields:
        column = model_field.column
        if column is None or column in listed or model_field.null or not model_field.has_default():
            continue
        value = model_field.get_db_prep_save(model_field.get_default(), connection)
        statement = sql.SQL("ALTER TABLE devices_device ALTER COLUMN {} SET DEFAULT {}")
        cursor.execute(statement.format(sql.Identifier(column), sql.Literal(value)))
        filled.append(column)
    return filled


def load_devices(world: World, count: int, bulk: int, using: str = "default") -> float:
    """COPY ``count`` devices into devices_device (secondary indexes dropped during the load and
    rebuilt after; foreign keys are correct by construction so their triggers are skipped), then
    ANALYZE. Returns the seconds the load took."""
    import time

    from django.db import connections, transaction

    rows = device_rows(world, count, bulk)
    started = time.perf_counter()
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'devices_device' "
            "AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SET LOCAL session_replication_role = replica")
        filled = _fill_other_columns(cursor, connections[using])
        with cursor.copy(f"COPY devices_device ({COLUMNS}) FROM STDIN") as copy:
            copy.write(rows.getvalue())
        for column in filled:
            cursor.execute(f'ALTER TABLE devices_device ALTER COLUMN "{column}" DROP DEFAULT')
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        for _, definition in indexes:
            cursor.execute(definition)
    with connections[using].cursor() as cursor:
        cursor.execute("VACUUM ANALYZE devices_device")
        cursor.execute("ANALYZE")
    return time.perf_counter() - started
