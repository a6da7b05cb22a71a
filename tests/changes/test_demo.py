"""``load_changes_demo``: the ``make run`` demo's pending approval and bulk command, once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.changes.models import ChangeRequest

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_the_changes_demo_leaves_one_request_pending_and_one_bulk_command_scheduled(capsys):
    call_command("load_demo", force=True)
    call_command("load_fleet_demo", scale=1)
    before = timezone.now()
    call_command("load_changes_demo", delay=90)

    requests = ChangeRequest.objects.order_by("title")
    assert [
        (r.organization.slug, r.title, r.kind, r.spec["command"], r.status, r.required_approvals)
        for r in requests
    ] == [
        (
            "northwind-hospitals",
            "Factory reset of Northwind's couriers",
            "command",
            "factory_reset",
            "pending_approval",
            1,
        ),
        ("northwind-hospitals", "Ping every online courier", "command", "ping", "scheduled", 0),
    ]
    bulk = requests.get(title="Ping every online courier")
    assert bulk.target["filter"]["connectivity"] == ["online"]
    assert before + timedelta(seconds=89) < bulk.run_at < timezone.now() + timedelta(seconds=91)
    assert {r.created_by.email for r in requests} == {"operator@acme.example"}
    assert "Bulk command 'Ping every online courier' runs in 90 s." in capsys.readouterr().out

    call_command("load_changes_demo")
    assert ChangeRequest.objects.count() == 2
    assert "Demo change requests already loaded." in capsys.readouterr().out
