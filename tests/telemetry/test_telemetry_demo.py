"""``load_telemetry_demo``: the alert rules of the demo's simulated fleet, once."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from apps.telemetry.models import AlertRule

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_the_telemetry_demo_adds_the_fleets_alert_rules_once(capsys):
    call_command("load_demo", force=True)
    call_command("load_fleet_demo", scale=1)
    call_command("load_telemetry_demo")
    rules = AlertRule.objects.order_by("name")
    assert [
        (r.organization.slug, r.name, r.kind, r.severity, r.open_after_seconds) for r in rules
    ] == [
        ("northwind-hospitals", "Battery low", "threshold", "warning", 60),
        ("northwind-hospitals", "Courier fleet offline", "fleet_offline", "critical", 0),
        ("northwind-hospitals", "Robot offline", "state_change", "major", 0),
        ("northwind-hospitals", "Ward too warm", "threshold", "minor", 120),
    ]
    assert rules.get(kind="fleet_offline").profile.slug == "courier-robot"
    assert "Alert rules: 4 created, 0 kept." in capsys.readouterr().out

    call_command("load_telemetry_demo")
    assert AlertRule.objects.count() == 4
    assert "Alert rules: 0 created, 4 kept." in capsys.readouterr().out
