"""/api/v1/alert-rules/ and /api/v1/alerts/: the authorization matrix on every endpoint (as
sessions and as API keys), exact bodies, filters, cursor pages, the error envelope and the list
query budget."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.accounts.roles import Role
from apps.telemetry.alerting import evaluate_batch
from apps.telemetry.models import Alert, AlertRule
from tests.authz import Call, Case, assert_authz_matrix, authz_world, error, ids, iso, last_audit
from tests.factories import make_member

from .alert_support import at, fresh_alert_cache, make_rule, sample  # noqa: F401
from .conftest import make_device, make_version

__all__ = ["authz_world"]

pytestmark = pytest.mark.django_db

RULES, ALERTS = "/api/v1/alert-rules/", "/api/v1/alerts/"
VIEWERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.APPROVER, Role.TECHNICIAN, Role.VIEWER}
RULE_EDITORS = {Role.OWNER, Role.ADMIN, Role.OPERATOR}
RULE_DELETERS = {Role.OWNER, Role.ADMIN}
ALERT_CHANGERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.TECHNICIAN}
HOT = {"metric": "temperature", "operator": "gt", "value": 80}


def rule_json(rule: AlertRule) -> dict[str, Any]:
    rule.refresh_from_db()
    return {
        "id": str(rule.pk),
        "organization": str(rule.organization_id),
        "name": rule.name,
        "description": rule.description,
        "enabled": rule.enabled,
        "kind": rule.kind,
        "condition": rule.condition,
        "severity": rule.severity,
        "open_after_seconds": rule.open_after_seconds,
        "clear_after_seconds": rule.clear_after_seconds,
        "auto_resolve": rule.auto_resolve,
        "profile": str(rule.profile_id) if rule.profile_id else None,
        "group": None,
        "device": str(rule.device_id) if rule.device_id else None,
        "created_by": None,
        "created_at": iso(rule.created_at),
        "updated_at": iso(rule.updated_at),
    }


def alert_json(alert: Alert) -> dict[str, Any]:
    alert = Alert.objects.select_related("rule", "device", "acknowledged_by", "resolved_by").get(
        pk=alert.pk
    )
    return {
        "id": str(alert.pk),
        "organization": str(alert.organization_id),
        "rule": {"id": str(alert.rule_id), "name": alert.rule.name, "kind": alert.rule.kind},
        "device": {"id": str(alert.device_id), "serial": alert.device.serial},
        "severity": alert.severity,
        "status": alert.status,
        "message": alert.message,
        "details": alert.details,
        "opened_at": iso(alert.opened_at),
        "acknowledged_at": iso(alert.acknowledged_at),
        "acknowledged_by": alert.acknowledged_by.email if alert.acknowledged_by else None,
        "resolved_at": iso(alert.resolved_at),
        "resolved_by": alert.resolved_by.email if alert.resolved_by else None,
        "updated_at": iso(alert.updated_at),
    }


def home_rule(world) -> AlertRule:
    return make_rule(world.home, name="Hot", condition=HOT, severity="major")


def home_alert(world) -> Alert:
    """An open alert of acme's rule on a retail device."""
    version = make_version(world.home, name="Thermo")
    device = make_device(version, world.tree["retail"])
    home_rule(world)
    evaluate_batch([sample(device, at(0), temperature=85)], [], at(0))
    return Alert.objects.get()


def rules_state(attempt) -> list[tuple[Any, ...]]:
    return list(AlertRule.objects.order_by("id").values_list("id", "name", "condition", "enabled"))


def alerts_state(attempt) -> list[tuple[Any, ...]]:
    return list(Alert.objects.order_by("id").values_list("id", "status", "acknowledged_by_id"))


# --- rules -------------------------------------------------------------------------------------


def test_rule_list_matrix(authz_world):
    def expect(attempt, response):
        assert response.json()["results"] == [rule_json(attempt.target)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="alertrule.view",
            allowed=VIEWERS,
            setup=home_rule,
            request=lambda a: Call("get", RULES, {"organization": str(a.world.home.pk)}),
            expect=expect,
            listing=True,
        ),
    )


def test_rule_retrieve_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == rule_json(attempt.target)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="alertrule.view",
            allowed=VIEWERS,
            setup=home_rule,
            request=lambda a: Call("get", f"{RULES}{a.target.pk}/"),
            expect=expect,
        ),
    )


def test_rule_create_matrix(authz_world):
    def expect(attempt, response):
        rule = AlertRule.objects.get(name="Door forced")
        assert response.json() == rule_json(rule) | {"created_by": _creator(attempt)}
        assert (rule.kind, rule.condition, rule.clear_after_seconds) == (
            "event_match",
            {"type": "door.forced", "min_severity": "error"},
            0,
        )
        assert last_audit("alertrule.create").actor_label == attempt.principal.label

    body = {
        "kind": "event_match",
        "name": "Door forced",
        "condition": {"type": "door.forced", "min_severity": "error"},
        "severity": "critical",
    }
    assert_authz_matrix(
        authz_world,
        Case(
            permission="alertrule.add",
            allowed=RULE_EDITORS,
            request=lambda a: Call("post", RULES, {**body, "organization": str(a.world.home.pk)}),
            status=201,
            state=rules_state,
            expect=expect,
        ),
    )


def _creator(attempt) -> str | None:
    user = attempt.principal.user
    return str(user.pk) if user is not None else None


def test_rule_update_matrix(authz_world):
    def expect(attempt, response):
        assert response.json()["condition"] == {**HOT, "value": 90}
        assert response.json()["open_after_seconds"] == 120
        assert last_audit("alertrule.update").changes == {
            "condition": [HOT, {**HOT, "value": 90}],
            "open_after_seconds": [0, 120],
        }

    assert_authz_matrix(
        authz_world,
        Case(
            permission="alertrule.change",
            allowed=RULE_EDITORS,
            setup=home_rule,
            request=lambda a: Call(
                "patch",
                f"{RULES}{a.target.pk}/",
                {"condition": {**HOT, "value": 90}, "open_after_seconds": 120},
            ),
            state=rules_state,
            expect=expect,
        ),
    )


def test_rule_delete_matrix(authz_world):
    def expect(attempt, response):
        assert not AlertRule.objects.filter(pk=attempt.target.pk).exists()

    assert_authz_matrix(
        authz_world,
        Case(
            permission="alertrule.delete",
            allowed=RULE_DELETERS,
            setup=home_rule,
            request=lambda a: Call("delete", f"{RULES}{a.target.pk}/"),
            status=204,
            state=rules_state,
            expect=expect,
        ),
    )


def test_a_bad_rule_gets_the_envelope_with_field_errors_and_changes_nothing(tree):
    client = APIClient()
    client.force_login(make_member(tree["acme"], Role.ADMIN))
    body = {
        "organization": str(tree["acme"].pk),
        "kind": "range",
        "name": "Humid",
        "condition": {"metric": "humidity", "low": 60, "high": 20},
        "profile": "01a22b03-9f05-7071-ac90-9c8e73868a5d",
    }

    response = client.post(RULES, body, format="json")

    assert response.status_code == 400
    assert error(response)["fields"] == {
        "condition.high": ["Must be at least low."],
        "profile": ["Unknown profile."],
    }
    assert AlertRule.objects.count() == 0


def test_a_rule_may_not_reference_what_the_caller_cannot_see(tree):
    client = APIClient()
    client.force_login(make_member(tree["acme"], Role.ADMIN))
    theirs = make_device(make_version(tree["globex"], name="Theirs"), tree["globex"])
    body = {
        "organization": str(tree["acme"].pk),
        "kind": "threshold",
        "name": "Spy",
        "condition": HOT,
        "device": str(theirs.pk),
    }

    response = client.post(RULES, body, format="json")

    assert (response.status_code, error(response)["fields"]) == (
        400,
        {"device": ["Unknown device."]},
    )


# --- alerts ------------------------------------------------------------------------------------


def test_alert_list_matrix(authz_world):
    def expect(attempt, response):
        assert response.json()["results"] == [alert_json(attempt.target)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="alert.view",
            allowed=VIEWERS,
            setup=home_alert,
            request=lambda a: Call("get", ALERTS, {"status": "active"}),
            expect=expect,
            listing=True,
        ),
    )


def test_alert_retrieve_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == alert_json(attempt.target)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="alert.view",
            allowed=VIEWERS,
            setup=home_alert,
            request=lambda a: Call("get", f"{ALERTS}{a.target.pk}/"),
            expect=expect,
        ),
    )


@pytest.mark.parametrize(
    ("verb", "before", "after"),
    [
        ("acknowledge", None, "acknowledged"),
        ("resolve", None, "resolved"),
        ("reopen", "resolve", "open"),
    ],
)
def test_alert_action_matrix(authz_world, verb, before, after):
    from apps.core.actors import SYSTEM
    from apps.telemetry.alerting import services

    def setup(world):
        alert = home_alert(world)
        if before:
            services.alert_resolve(actor=SYSTEM, alert=alert)
        return alert

    def expect(attempt, response):
        body = response.json()
        assert body == alert_json(attempt.target)
        assert body["status"] == after
        audit = last_audit(f"alert.{verb}")
        assert (audit.actor_label, audit.changes["note"]) == (attempt.principal.label, "seen")
        if verb == "acknowledge":
            expected_by = attempt.principal.user.email if attempt.principal.user else None
            assert body["acknowledged_by"] == expected_by

    assert_authz_matrix(
        authz_world,
        Case(
            permission="alert.change",
            allowed=ALERT_CHANGERS,
            setup=setup,
            request=lambda a: Call("post", f"{ALERTS}{a.target.pk}/{verb}/", {"note": "seen"}),
            state=alerts_state,
            expect=expect,
        ),
    )


def test_acknowledging_twice_is_refused_with_the_envelope(tree):
    world_alert = _alert_in(tree)
    client = APIClient()
    client.force_login(make_member(tree["acme"], Role.OPERATOR))
    assert (
        client.post(f"{ALERTS}{world_alert.pk}/acknowledge/", {}, format="json").status_code == 200
    )

    response = client.post(f"{ALERTS}{world_alert.pk}/acknowledge/", {}, format="json")

    assert response.status_code == 400
    assert error(response)["fields"] == {"status": ["Only an open alert can be acknowledged."]}


def _alert_in(tree) -> Alert:
    device = make_device(make_version(tree["acme"], name="Thermo"), tree["acme"])
    make_rule(tree["acme"], name="Hot", condition=HOT)
    evaluate_batch([sample(device, at(0), temperature=85)], [], at(0))
    return Alert.objects.get()


def test_alert_filters_and_cursor_pages(tree):
    version = make_version(tree["acme"], name="Thermo")
    fleet = [make_device(version, tree["acme"]) for _ in range(3)]
    hot = make_rule(tree["acme"], name="Hot", condition=HOT, severity="major")
    make_rule(
        tree["acme"],
        name="Humid",
        condition={"metric": "humidity", "operator": "gt", "value": 90},
        severity="minor",
    )
    for second, device in enumerate(fleet):
        evaluate_batch([sample(device, at(second), temperature=85, humidity=95)], [], at(second))
    first = Alert.objects.filter(device=fleet[0], rule=hot).get()
    from apps.core.actors import SYSTEM
    from apps.telemetry.alerting import services

    services.alert_resolve(actor=SYSTEM, alert=first)
    client = APIClient()
    client.force_login(make_member(tree["acme"], Role.VIEWER))

    newest_first = list(Alert.objects.order_by("-opened_at", "-id").values_list("id", flat=True))
    page = client.get(ALERTS, {"page_size": 4})
    rest = client.get(page.json()["next"])
    assert ids(page) + ids(rest) == [str(pk) for pk in newest_first]
    assert len(ids(page)) == 4
    assert ids(client.get(ALERTS, {"status": "resolved"})) == [str(first.pk)]
    assert len(ids(client.get(ALERTS, {"status": "active"}))) == 5
    assert len(ids(client.get(ALERTS, {"severity": "minor"}))) == 3
    assert ids(client.get(ALERTS, {"device": str(fleet[0].pk), "rule": str(hot.pk)})) == [
        str(first.pk)
    ]
    bad = client.get(ALERTS, {"status": "sleeping", "device": "nope"})
    assert bad.status_code == 400
    assert sorted(error(bad)["fields"]) == ["device", "status"]


def test_the_alert_list_costs_the_same_queries_for_one_or_many(tree):
    version = make_version(tree["acme"], name="Thermo")
    make_rule(tree["acme"], name="Hot", condition=HOT)
    client = APIClient()
    client.force_login(make_member(tree["acme"], Role.VIEWER))
    counts = []
    for devices in (1, 20):
        Alert.objects.all().delete()
        batch = [
            sample(make_device(version, tree["acme"]), at(0), temperature=85)
            for _ in range(devices)
        ]
        evaluate_batch(batch, [], at(0))
        with CaptureQueriesContext(connection) as queries:
            assert len(ids(client.get(ALERTS))) == devices
        counts.append(len(queries))
    assert counts[0] == counts[1]
