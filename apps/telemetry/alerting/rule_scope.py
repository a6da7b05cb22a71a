"""Checks of a rule before it is saved, and what a rule change does to its conditions and
alerts (used by the rule services only)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import F
from django.utils import timezone

from apps.core.actors import Actor
from apps.devices.groups import group_list
from apps.devices.lifecycle import emit_many
from apps.devices.models import Device
from apps.profiles.models import DeviceProfile

from ..choices import AlertStatus, Severity
from ..models import Alert, AlertCondition, AlertRule
from .rules import clean_condition
from .store import ALERT_TYPE, audit_rows, event_payload

__all__ = ["check_rule", "reset_conditions", "resolve_open_alerts"]


def _related(path: str, other: str) -> bool:
    """Whether two organizations are on one line of the tree (one is above the other)."""
    return path.startswith(other) or other.startswith(path)


def _scope_errors(actor: Actor, rule: AlertRule) -> dict[str, list[str]]:
    """The profile, group or device must be visible to the actor and on the rule
    organization's line of the tree (a device: inside its subtree), else the rule could never
    apply."""
    errors: dict[str, list[str]] = {}
    path = rule.organization.path
    if rule.profile_id is not None:
        profile = (
            DeviceProfile.objects.for_actor(actor, "view")
            .filter(pk=rule.profile_id)
            .values_list("organization__path", flat=True)
            .first()
        )
        if profile is None or not _related(path, profile):
            errors["profile"] = ["Unknown profile."]
    if rule.group_id is not None:
        group = (
            group_list(actor=actor)
            .filter(pk=rule.group_id)
            .values_list("organization__path", flat=True)
            .first()
        )
        if group is None or not _related(path, group):
            errors["group"] = ["Unknown group."]
    if rule.device_id is not None:
        device = (
            Device.objects.for_actor(actor, "view")
            .filter(pk=rule.device_id)
            .values_list("organization__path", flat=True)
            .first()
        )
        if device is None or not device.startswith(path):
            errors["device"] = ["Unknown device."]
    return errors


def check_rule(actor: Actor, rule: AlertRule) -> None:
    """Every field of a rule about to be saved; one ValidationError naming each bad field."""
    errors: dict[str, list[str]] = {}
    rule.name = str(rule.name or "").strip()
    if not rule.name:
        errors["name"] = ["This field may not be blank."]
    elif len(rule.name) > 200:
        errors["name"] = ["At most 200 characters."]
    elif (
        AlertRule.objects.filter(organization_id=rule.organization_id, name=rule.name)
        .exclude(pk=rule.pk)
        .exists()
    ):
        errors["name"] = ["A rule with this name already exists here."]
    if rule.severity not in Severity.values:
        errors["severity"] = [f"One of: {', '.join(Severity.values)}."]
    for flag in ("enabled", "auto_resolve"):
        if not isinstance(getattr(rule, flag), bool):
            errors[flag] = ["true or false."]
    try:
        rule.condition = clean_condition(
            kind=rule.kind,
            condition=rule.condition,
            open_after_seconds=rule.open_after_seconds,
            clear_after_seconds=rule.clear_after_seconds,
            scoped={"profile": rule.profile_id, "group": rule.group_id, "device": rule.device_id},
        )
    except ValidationError as error:
        errors.update(error.message_dict)
    for key, messages in _scope_errors(actor, rule).items():
        errors.setdefault(key, messages)
    if errors:
        raise ValidationError(errors)


RESET = """
INSERT INTO telemetry_alertcondition (rule_id, device_id, breaching, updated_at)
SELECT rule_id, device_id, true, %(now)s FROM telemetry_alert
WHERE rule_id = %(rule)s AND NOT (status = 'resolved')
ON CONFLICT (rule_id, device_id) DO NOTHING
"""


def reset_conditions(rule: AlertRule) -> None:
    """Start the rule's conditions over; the pairs with an open alert start as breaching, so
    the alert resolves once the new condition is clear (and never opens twice)."""
    AlertCondition.objects.filter(rule=rule).delete()
    with connection.cursor() as cursor:
        cursor.execute(RESET, {"rule": rule.pk, "now": timezone.now()})


def resolve_open_alerts(*, actor: Actor, rule: AlertRule, reason: str) -> int:
    """Resolve every unresolved alert of the rule as ``actor`` (set-based), with their events
    and audit rows; returns how many."""
    open_alerts = Alert.objects.filter(rule=rule).exclude(status=AlertStatus.RESOLVED)
    rows: list[dict[str, Any]] = list(
        open_alerts.select_for_update(of=("self",))
        .order_by("id")
        .values(
            "id",
            "organization_id",
            "rule_id",
            "device_id",
            "severity",
            "message",
            "opened_at",
            "status",
            serial=F("device__serial"),
        )
    )
    if not rows:
        return 0
    now = timezone.now()
    Alert.objects.filter(pk__in=[row["id"] for row in rows]).update(
        status=AlertStatus.RESOLVED, resolved_at=now, resolved_by=actor.user_id, updated_at=now
    )
    by = actor.label if actor.user_id is not None else None
    emit_many(
        "alert.resolved",
        [
            (
                row["organization_id"],
                str(row["id"]),
                event_payload(row, rule.name, AlertStatus.RESOLVED, by=by),
            )
            for row in rows
        ],
        subject_type=ALERT_TYPE,
    )
    audit_rows(
        rows,
        "alert.resolve",
        lambda row: {"status": [row["status"], AlertStatus.RESOLVED], "note": reason},
        actor=actor,
    )
    return len(rows)
