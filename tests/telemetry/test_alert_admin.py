"""The alerting back office: lists without full counts, actions through the services (audited
as the staff member), staff scoped to their organizations."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from apps.accounts.models import User
from apps.telemetry.alerting import evaluate_batch
from apps.telemetry.models import Alert, AlertRule
from tests.factories import make_member

from .alert_support import alert_audit, at, fresh_alert_cache, make_rule, sample  # noqa: F401
from .conftest import make_device, make_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root@fleetops.example", "pw-12345678"))
    return client


@pytest.fixture
def alerts(tree):
    version = make_version(tree["acme"], name="Thermo")
    mine, theirs = make_device(version, tree["retail"]), make_device(version, tree["globex"])
    make_rule(tree["retail"], name="Retail hot")
    make_rule(tree["globex"], name="Globex hot")
    evaluate_batch([sample(d, at(0), temperature=90) for d in (mine, theirs)], [], at(0))
    return {"mine": Alert.objects.get(device=mine), "theirs": Alert.objects.get(device=theirs)}


def test_the_changelists_open_without_full_counts(root, alerts):
    for url in (
        "/admin/telemetry/alert/",
        "/admin/telemetry/alertrule/",
        "/admin/telemetry/alertcondition/",
    ):
        response = root.get(url)
        assert response.status_code == 200, url
        assert response.context["cl"].show_full_result_count is False
    found = root.get("/admin/telemetry/alert/", {"q": alerts["mine"].device.serial})
    assert [a.pk for a in found.context["cl"].result_list] == [alerts["mine"].pk]


def test_resolve_runs_the_service_as_the_staff_member(root, alerts):
    response = root.post(
        "/admin/telemetry/alert/",
        {"action": "resolve", "_selected_action": [str(alerts["mine"].pk)]},
        follow=True,
    )

    assert [str(m) for m in response.context["messages"]] == [
        "Resolved: 1; unchanged: 0; not permitted: 0."
    ]
    assert Alert.objects.get(pk=alerts["mine"].pk).status == "resolved"
    assert alert_audit()[-1] == (
        "alert.resolve",
        "root@fleetops.example",
        {"status": ["open", "resolved"], "note": "from the admin"},
    )


def test_disabling_rules_resolves_their_alerts(root, alerts):
    rule = AlertRule.objects.get(name="Retail hot")

    root.post(
        "/admin/telemetry/alertrule/",
        {"action": "disable", "_selected_action": [str(rule.pk)]},
        follow=True,
    )

    assert AlertRule.objects.get(pk=rule.pk).enabled is False
    assert Alert.objects.get(pk=alerts["mine"].pk).status == "resolved"


def test_staff_see_only_their_scope(tree, alerts):
    user = make_member(tree["retail"], "viewer")
    user.is_staff = True
    user.save()
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_alert", "view_alertcondition"])
    )
    client = Client()
    client.force_login(user)

    listed = client.get("/admin/telemetry/alert/").context["cl"].result_list
    conditions = client.get("/admin/telemetry/alertcondition/").context["cl"].result_list

    assert [a.pk for a in listed] == [alerts["mine"].pk]
    assert [c.device_id for c in conditions] == [alerts["mine"].device_id]
