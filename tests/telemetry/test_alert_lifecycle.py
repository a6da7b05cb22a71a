"""The alert lifecycle with who did what: acknowledge, resolve, reopen; their audit rows, their
events (the payload the notifications consume) and what they do to the rule's condition."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from apps.accounts.actors import actor_for_api_key
from apps.accounts.models import APIKey
from apps.accounts.roles import Role
from apps.accounts.tokens import issue
from apps.telemetry.alerting import evaluate_batch, services
from apps.telemetry.alerting.selectors import alert_timeline
from apps.telemetry.models import Alert
from tests.factories import actor, make_member

from .alert_support import (
    alert_audit,
    alert_events,
    at,
    condition,
    fresh_alert_cache,  # noqa: F401
    make_rule,
    sample,
)
from .conftest import make_device


@pytest.fixture
def opened(tree, telemetry_version):
    """An open alert of rule "Hot" on an acme device (temperature 85 at T0)."""
    device = make_device(telemetry_version, tree["acme"])
    make_rule(tree["acme"], name="Hot", severity="major")
    evaluate_batch([sample(device, at(0), temperature=85)], [], at(0))
    return Alert.objects.select_related("rule", "device").get()


@pytest.mark.django_db
def test_acknowledge_then_resolve_records_who_did_what(tree, opened):
    technician = make_member(tree["retail"], Role.TECHNICIAN)  # below acme: no
    operator = make_member(tree["acme"], Role.OPERATOR)
    with pytest.raises(PermissionDenied):
        services.alert_acknowledge(actor=actor(technician), alert=opened)

    services.alert_acknowledge(actor=actor(operator), alert=opened, note="on my way")
    services.alert_resolve(actor=actor(operator), alert=opened, note="fan replaced")

    alert = Alert.objects.get()
    assert (alert.status, alert.acknowledged_by_id, alert.resolved_by_id) == (
        "resolved",
        operator.pk,
        operator.pk,
    )
    assert alert.acknowledged_at <= alert.resolved_at
    assert alert_audit() == [
        ("alert.open", "system", {"status": [None, "open"]}),
        (
            "alert.acknowledge",
            operator.email,
            {"status": ["open", "acknowledged"], "note": "on my way"},
        ),
        (
            "alert.resolve",
            operator.email,
            {"status": ["acknowledged", "resolved"], "note": "fan replaced"},
        ),
    ]
    assert [(kind, p["status"], p["by"]) for kind, p in alert_events()] == [
        ("alert.opened", "open", None),
        ("alert.acknowledged", "acknowledged", operator.email),
        ("alert.resolved", "resolved", operator.email),
    ]
    assert [
        (e["action"], e["who"], e["system"], e["note"]) for e in alert_timeline(alert=alert)
    ] == [
        ("open", "system", True, ""),
        ("acknowledge", operator.email, False, "on my way"),
        ("resolve", operator.email, False, "fan replaced"),
    ]


@pytest.mark.django_db
def test_the_acknowledged_event_carries_the_contract_payload(tree, opened):
    owner = make_member(tree["acme"], Role.OWNER)

    services.alert_acknowledge(actor=actor(owner), alert=opened)

    kind, payload = alert_events()[-1]
    assert (kind, payload) == (
        "alert.acknowledged",
        {
            "alert_id": str(opened.pk),
            "rule_id": str(opened.rule_id),
            "rule_name": "Hot",
            "device_id": str(opened.device_id),
            "device_serial": opened.device.serial,
            "severity": "major",
            "message": "temperature 85 > 80",
            "status": "acknowledged",
            "opened_at": at(0).isoformat(),
            "by": owner.email,
        },
    )


@pytest.mark.django_db
def test_an_api_key_acts_without_a_by(tree, opened):
    issued = issue("api")
    key = APIKey.objects.create(
        organization=tree["acme"],
        name="ops",
        role=Role.ADMIN,
        prefix=issued.prefix,
        token_hash=issued.token_hash,
    )
    services.alert_resolve(actor=actor_for_api_key(key), alert=opened)

    assert alert_events()[-1][1]["by"] is None
    assert Alert.objects.get().resolved_by_id is None
    assert alert_audit()[-1][1] == "API key ops (" + key.prefix + ")"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ("alert_acknowledge", "alert_acknowledge", "Only an open alert can be acknowledged."),
        ("alert_resolve", "alert_resolve", "This alert is already resolved."),
        ("alert_resolve", "alert_acknowledge", "Only an open alert can be acknowledged."),
        (None, "alert_reopen", "Only a resolved alert can be reopened."),
    ],
)
def test_transitions_out_of_order_are_refused(tree, opened, first, second, message):
    admin = actor(make_member(tree["acme"], Role.ADMIN))
    if first:
        getattr(services, first)(actor=admin, alert=opened)
    status = Alert.objects.get().status

    with pytest.raises(ValidationError) as raised:
        getattr(services, second)(actor=admin, alert=opened)

    assert raised.value.message_dict == {"status": [message]}
    assert Alert.objects.get().status == status


@pytest.mark.django_db
def test_resolving_by_hand_restarts_the_condition_so_a_persisting_problem_reopens(tree, opened):
    admin = actor(make_member(tree["acme"], Role.ADMIN))

    services.alert_resolve(actor=admin, alert=opened)

    assert condition(opened.rule, opened.device)[:3] == (False, None, None)
    assert evaluate_batch([sample(opened.device, at(10), temperature=86)], [], at(10)) == (1, 0)
    assert list(Alert.objects.order_by("opened_at").values_list("status", flat=True)) == [
        "resolved",
        "open",
    ]


@pytest.mark.django_db
def test_reopen_brings_a_resolved_alert_back_unless_another_is_open(tree, opened):
    admin = make_member(tree["acme"], Role.ADMIN)
    services.alert_resolve(actor=actor(admin), alert=opened)

    services.alert_reopen(actor=actor(admin), alert=opened, note="not fixed")

    alert = Alert.objects.get()
    assert (alert.status, alert.resolved_at, alert.resolved_by_id) == ("open", None, None)
    assert alert_events()[-1][0:1] == ("alert.opened",)
    assert alert_events()[-1][1]["by"] == admin.email

    services.alert_resolve(actor=actor(admin), alert=opened)
    evaluate_batch([sample(opened.device, at(10), temperature=90)], [], at(10))  # a new one
    with pytest.raises(ValidationError) as raised:
        services.alert_reopen(actor=actor(admin), alert=opened)
    assert raised.value.message_dict == {
        "status": ["Another alert of this rule and device is open."]
    }
