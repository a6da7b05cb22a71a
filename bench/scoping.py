"""Benchmark: the ``for_actor`` choke point against hand-written SQL on the same data.

Builds an organization tree (20 manufacturers x 50 customers) and N audit rows spread over it
in a dedicated database, then times the first page of a manufacturer's scoped audit log through
the ORM (``AuditLog.objects.for_actor``) against the raw SQL a careful person would write for the
same result, in the same run. Prints the ratio (ORM / raw) and the access paths the planner chose.

Usage: python bench/scoping.py [rows]   (make bench)
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")


def use_bench_database() -> None:
    import environ

    environ.Env.read_env(str(ROOT / "var" / "run" / "services.env"), overwrite=False)
    url = os.environ["DATABASE_URL"]
    base, _, _ = url.rpartition("/")
    import psycopg

    with psycopg.connect(f"{base}/postgres", autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS fleetops_bench")
        admin.execute("CREATE DATABASE fleetops_bench")
    os.environ["DATABASE_URL"] = f"{base}/fleetops_bench"


def build(rows: int) -> dict[str, object]:
    from django.core.management import call_command
    from django.db import connection

    from apps.accounts import services
    from apps.accounts.models import Organization
    from apps.core.actors import SYSTEM

    call_command("migrate", verbosity=0)
    platform = services.organization_create(actor=SYSTEM, name="Platform", parent=None)
    manufacturers = [
        services.organization_create(actor=SYSTEM, name=f"M{i}", parent=platform) for i in range(20)
    ]
    customers: list[Organization] = []
    for manufacturer in manufacturers:
        customers += [
            Organization(
                name=f"{manufacturer.name}-C{j}",
                slug=f"{manufacturer.slug}-c{j}",
                parent=manufacturer,
                depth=2,
            )
            for j in range(50)
        ]
    for customer in customers:
        customer.path = customer.parent.path + Organization.segment(customer.id)  # type: ignore[union-attr]
    Organization.objects.bulk_create(customers)
    org_ids = [customer.id for customer in customers]
    buffer = io.StringIO()
    for i in range(rows):
        buffer.write(
            f"{uuid.uuid4()}\t2026-01-01 00:00:00+00\t{org_ids[i % len(org_ids)]}\t"
            f"system\tsystem\tworker\tbench.row\tbench\t{i}\trow {i}\t{{}}\t\n"
        )
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE core_auditlog DISABLE TRIGGER USER")
        with cursor.copy(
            "COPY core_auditlog (id, created_at, organization_id, actor_kind, actor_label, "
            "source, action, object_type, object_id, object_repr, changes, request_id) "
            "FROM STDIN"
        ) as copy:
            copy.write(buffer.getvalue())
        cursor.execute(
            "UPDATE core_auditlog SET created_at = created_at + "
            "(object_id::int * interval '1 second') WHERE action = 'bench.row'"
        )
        cursor.execute("ALTER TABLE core_auditlog ENABLE TRIGGER USER")
        cursor.execute("ANALYZE")
    return {"manufacturer": manufacturers[7]}


def timed(function, repeat: int = 60) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> int:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    use_bench_database()
    import django

    django.setup()
    from django.db import connection

    from apps.core.actors import Actor, ActorKind, Grant
    from apps.core.models import AuditLog

    world = build(rows)
    manufacturer = world["manufacturer"]
    actor = Actor(
        kind=ActorKind.USER,
        label="bench",
        grants=(
            Grant(
                organization_id=manufacturer.id,
                organization_path=manufacturer.path,  # type: ignore[attr-defined]
                permissions=frozenset({"auditlog.view"}),
            ),
        ),
    )

    def orm_page() -> list[object]:
        return list(
            AuditLog.objects.for_actor(actor, "view")
            .order_by("-created_at", "-id")
            .values_list("id", "action", "object_repr")[:50]
        )

    raw_sql = (
        "SELECT id, action, object_repr FROM core_auditlog WHERE organization_id IN "
        "(SELECT id FROM accounts_organization WHERE path LIKE %s) "
        "ORDER BY created_at DESC, id DESC LIMIT 50"
    )

    def raw_page() -> list[object]:
        with connection.cursor() as cursor:
            cursor.execute(raw_sql, [manufacturer.path + "%"])  # type: ignore[attr-defined]
            return cursor.fetchall()

    assert [row[0] for row in orm_page()] == [row[0] for row in raw_page()]
    orm_page(), raw_page()  # warm both
    orm, raw = timed(orm_page), timed(raw_page)
    query = AuditLog.objects.for_actor(actor, "view").order_by("-created_at", "-id")[:50]
    plan = query.explain()
    audit_scan = "sequential" if "Seq Scan on core_auditlog" in plan else "index"
    print(f"rows={rows} organizations={20 * 51 + 1}")
    print(
        f"scoped first page: orm={orm * 1000:.2f} ms raw={raw * 1000:.2f} ms "
        f"ratio={orm / raw:.2f} (goal <= 1.5)"
    )
    print(
        f"audit log access path chosen by the planner: {audit_scan}; organization subtree: "
        f"{'index' if 'accounts_org' in plan else 'other'}"
    )
    return 0 if orm / raw <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
