"""Rule validation (one table of kinds and conditions with the exact field errors) and the rule
services: audit, events, the compiled-rule cache, and what a change does to conditions and
alerts."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache as django_cache
from django.core.exceptions import PermissionDenied, ValidationError

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, Event
from apps.telemetry.alerting import cache, evaluate_batch, services
from apps.telemetry.alerting.rules import clean_condition
from apps.telemetry.models import Alert, AlertCondition, AlertRule
from tests.factories import actor, make_member

from .alert_support import (
    alert_events,
    at,
    condition,
    fresh_alert_cache,  # noqa: F401
    make_rule,
    sample,
)
from .conftest import make_device, make_version

VALID = [
    ("threshold", {"metric": "temperature", "operator": "gte", "value": 80.5}),
    ("threshold", {"metric": "mode", "operator": "eq", "value": "error"}),
    ("threshold", {"metric": "door_open", "operator": "ne", "value": False}),
    ("range", {"metric": "humidity", "low": 20, "high": 60}),
    ("range", {"metric": "humidity", "low": 20, "high": 20, "inside": True}),
    ("missing_data", {"seconds": 600}),
    ("missing_data", {"metric": "temperature", "seconds": 10}),
    ("missed_heartbeats", {}),
    ("state_change", {"field": "connectivity", "to": "offline"}),
    ("state_change", {"field": "state", "to": "suspended", "from": "active"}),
    ("event_match", {"type": "door.*", "min_severity": "error", "clear_type": "door.closed"}),
]


@pytest.mark.parametrize(("kind", "spec"), VALID)
def test_valid_conditions_pass_unchanged(kind, spec):
    assert clean_condition(kind=kind, condition=spec) == spec


INVALID: list[tuple[str, Any, dict[str, Any], dict[str, list[str]]]] = [
    (
        "nonsense",
        {},
        {},
        {
            "kind": [
                "One of: threshold, range, missing_data, missed_heartbeats, "
                "state_change, event_match, fleet_offline."
            ]
        },
    ),
    ("threshold", [], {}, {"condition": ["An object."]}),
    (
        "threshold",
        {"metric": "two words", "operator": "above", "value": 1, "unit": "C"},
        {},
        {
            "condition.unit": ["Unknown key for this kind of rule."],
            "condition.metric": ["A metric name (letters, digits, _ . -; at most 64)."],
            "condition.operator": ["One of: gt, gte, lt, lte, eq, ne."],
        },
    ),
    (
        "threshold",
        {"metric": "t", "operator": "gt", "value": "hot"},
        {},
        {"condition.value": ["A number."]},
    ),
    (
        "threshold",
        {"metric": "t", "operator": "eq", "value": [1]},
        {},
        {"condition.value": ["A number, a boolean or a text."]},
    ),
    (
        "range",
        {"metric": "t", "low": 30, "high": 10, "inside": "yes"},
        {},
        {
            "condition.high": ["Must be at least low."],
            "condition.inside": ["true (alert inside the range) or false (outside)."],
        },
    ),
    ("range", {"metric": "t", "low": True, "high": 10}, {}, {"condition.low": ["A number."]}),
    (
        "missing_data",
        {"seconds": 5},
        {},
        {"condition.seconds": ["Whole seconds, 10 to 604800."]},
    ),
    (
        "missed_heartbeats",
        {"beats": 3},
        {},
        {"condition.beats": ["Unknown key for this kind of rule."]},
    ),
    (
        "state_change",
        {"field": "connectivity", "to": "maintenance"},
        {},
        {"condition.to": ["One of: online, offline."]},
    ),
    (
        "state_change",
        {"field": "state", "to": "maintenance"},
        {},
        {
            "condition.to": [
                "One of: escrow, discovered, active, suspended, decommissioned, replaced."
            ]
        },
    ),
    (
        "state_change",
        {"field": "name", "to": "x"},
        {},
        {"condition.field": ["One of: connectivity, state, configuration."]},
    ),
    (
        "event_match",
        {"type": "", "min_severity": "fatal"},
        {"open_after_seconds": 30},
        {
            "condition.type": ["An event type or a pattern such as door.* (at most 200)."],
            "condition.min_severity": ["One of: debug, info, warning, error, critical."],
            "open_after_seconds": ["An event rule opens on the event and clears on clear_type: 0."],
        },
    ),
    (
        "fleet_offline",
        {"percent": 100, "minutes": 1.5},
        {"open_after_seconds": 60},
        {
            "condition.percent": ["A number from 0 to 99.9: alert above this share offline."],
            "condition.minutes": ["Whole minutes, 0 to 1440."],
            "open_after_seconds": ["A fleet rule waits condition.minutes: 0 here."],
            "profile": ["A fleet rule needs a profile or a group."],
        },
    ),
    (
        "threshold",
        {"metric": "t", "operator": "gt", "value": 1},
        {"open_after_seconds": -1, "clear_after_seconds": 10**7},
        {
            "open_after_seconds": ["Whole seconds, 0 to 604800."],
            "clear_after_seconds": ["Whole seconds, 0 to 604800."],
        },
    ),
]


@pytest.mark.parametrize(("kind", "spec", "extra", "errors"), INVALID)
def test_invalid_conditions_name_each_bad_field(kind, spec, extra, errors):
    with pytest.raises(ValidationError) as raised:
        clean_condition(kind=kind, condition=spec, **extra)
    assert raised.value.message_dict == errors


# --- the services ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_create_writes_the_rule_its_audit_row_and_event_and_bumps_the_cache(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    version = cache._version()

    rule = make_rule(tree["acme"], actor=actor(owner), name="Hot", severity="major")

    assert (rule.created_by_id, rule.severity, rule.condition) == (
        owner.pk,
        "major",
        {"metric": "temperature", "operator": "gt", "value": 80},
    )
    audit = AuditLog.objects.get(action="alertrule.create")
    assert (audit.actor_label, audit.changes["name"], audit.changes["kind"]) == (
        owner.email,
        [None, "Hot"],
        [None, "threshold"],
    )
    assert Event.objects.get(type="alertrule.created").payload == {
        "id": str(rule.pk),
        "name": "Hot",
        "kind": "threshold",
    }
    assert django_cache.get(cache.VERSION_KEY) == version + 1


@pytest.mark.django_db
def test_create_refuses_bad_input_and_writes_nothing(tree, telemetry_version):
    foreign = make_device(telemetry_version, tree["globex"])
    elsewhere = make_version(tree["globex"], name="Globex thing")
    make_rule(tree["acme"], name="Taken")
    operator = actor(make_member(tree["acme"], Role.OPERATOR))
    audit_rows, rules = AuditLog.objects.count(), AlertRule.objects.count()

    with pytest.raises(ValidationError) as raised:
        services.rule_create(
            actor=operator,
            organization=tree["acme"],
            name=" Taken ",
            kind="threshold",
            condition={"metric": "t", "operator": "gt", "value": 1},
            severity="dire",
            profile=elsewhere.profile,
            device=foreign,
        )

    assert raised.value.message_dict == {
        "name": ["A rule with this name already exists here."],
        "severity": ["One of: critical, major, minor, warning, info."],
        "device": ["Narrow a rule by one of profile, group or device."],
        "profile": ["Unknown profile."],
    }
    assert (AuditLog.objects.count(), AlertRule.objects.count()) == (audit_rows, rules)


@pytest.mark.django_db
def test_a_role_without_the_permission_is_refused(tree):
    viewer = actor(make_member(tree["acme"], Role.VIEWER))
    rule = make_rule(tree["acme"])

    with pytest.raises(PermissionDenied):
        make_rule(tree["acme"], actor=viewer)
    with pytest.raises(PermissionDenied):
        services.rule_update(actor=viewer, rule=rule, name="Mine")
    with pytest.raises(PermissionDenied):
        services.rule_delete(actor=viewer, rule=rule)


@pytest.fixture
def thermo(tree, telemetry_version):
    return make_device(telemetry_version, tree["acme"])


@pytest.mark.django_db
def test_a_new_threshold_takes_effect_at_the_next_batch_and_open_alerts_clear_with_it(tree, thermo):
    rule = make_rule(tree["acme"])  # > 80
    evaluate_batch([sample(thermo, at(0), temperature=85)], [], at(0))

    services.rule_update(
        actor=SYSTEM, rule=rule, condition={"metric": "temperature", "operator": "gt", "value": 90}
    )

    assert condition(rule, thermo) == (True, None, None, None)  # restarted, alert still open
    assert evaluate_batch([sample(thermo, at(10), temperature=85)], [], at(10)) == (0, 1)
    assert evaluate_batch([sample(thermo, at(20), temperature=95)], [], at(20)) == (1, 0)
    assert AuditLog.objects.get(action="alertrule.update").changes == {
        "condition": [
            {"metric": "temperature", "operator": "gt", "value": 80},
            {"metric": "temperature", "operator": "gt", "value": 90},
        ]
    }


@pytest.mark.django_db
def test_a_new_severity_applies_to_open_alerts(tree, thermo):
    rule = make_rule(tree["acme"])
    evaluate_batch([sample(thermo, at(0), temperature=85)], [], at(0))

    services.rule_update(actor=SYSTEM, rule=rule, severity="critical")

    assert Alert.objects.get().severity == "critical"


@pytest.mark.django_db
def test_disabling_a_rule_resolves_its_alerts_and_stops_it(tree, thermo):
    admin = make_member(tree["acme"], Role.ADMIN)
    rule = make_rule(tree["acme"])
    evaluate_batch([sample(thermo, at(0), temperature=85)], [], at(0))

    services.rule_update(actor=actor(admin), rule=rule, enabled=False)

    alert = Alert.objects.get()
    assert (alert.status, alert.resolved_by_id) == ("resolved", admin.pk)
    assert alert_events()[-1][1]["by"] == admin.email
    assert AlertCondition.objects.filter(rule=rule).count() == 0
    assert evaluate_batch([sample(thermo, at(10), temperature=99)], [], at(10)) == (0, 0)


@pytest.mark.django_db
def test_deleting_a_rule_announces_its_open_alerts_resolved_then_removes_them(tree, thermo):
    rule = make_rule(tree["acme"], name="Gone")
    evaluate_batch([sample(thermo, at(0), temperature=85)], [], at(0))
    alert_id = str(Alert.objects.get().pk)

    services.rule_delete(actor=SYSTEM, rule=rule)

    assert (AlertRule.objects.count(), Alert.objects.count()) == (0, 0)
    resolved = alert_events()[-1]
    assert (resolved[0], resolved[1]["alert_id"], resolved[1]["status"]) == (
        "alert.resolved",
        alert_id,
        "resolved",
    )
    assert Event.objects.filter(type="alertrule.deleted").count() == 1
