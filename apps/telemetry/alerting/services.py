"""Writes of alerting: rules (create, update, delete) and the alert lifecycle.

Every write runs in one transaction with its audit record and its domain event. Rule changes
bump the compiled-rule cache version (``cache.bump``) so every ingest process reloads them.

Alert lifecycle, with who did what (audit rows and the alert's own fields):

- ``open`` (by the system when a rule's condition holds) -> ``acknowledged`` (someone is on it)
  -> ``resolved``; or ``open`` -> ``resolved`` directly. The system resolves an alert when its
  condition clears (rules with ``auto_resolve``; ``resolved_by`` stays empty).
- Resolving by hand also resets the rule's condition for that device: if the problem persists,
  the next breaching data opens a new alert (after ``open_after_seconds`` again).
- ``reopen`` puts a resolved alert back to open (resolved by mistake), unless another alert of
  the same rule and device is open meanwhile (at most one unresolved alert per pair).

Lock order, everywhere: the condition row, then the alert (the pipeline's order), so a person
resolving an alert while a batch evaluates it never deadlocks.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import Organization
from apps.core import audit, events
from apps.core.actors import Actor

from ..choices import AlertStatus
from ..models import Alert, AlertCondition, AlertRule
from . import cache
from .rule_scope import check_rule, reset_conditions, resolve_open_alerts
from .store import event_payload

__all__ = [
    "RULE_FIELDS",
    "alert_acknowledge",
    "alert_reopen",
    "alert_resolve",
    "rule_create",
    "rule_delete",
    "rule_update",
]

RULE_FIELDS = (
    "organization",
    "name",
    "description",
    "enabled",
    "kind",
    "condition",
    "severity",
    "open_after_seconds",
    "clear_after_seconds",
    "auto_resolve",
    "profile",
    "group",
    "device",
)
EVENT_FOR = {
    "acknowledge": "alert.acknowledged",
    "resolve": "alert.resolved",
    "reopen": "alert.opened",
}
EDITABLE = frozenset(RULE_FIELDS) - {"organization", "kind"}
# changing any of these restarts the conditions (the old state means nothing for the new rule)
EVALUATION_FIELDS = frozenset(
    {"condition", "open_after_seconds", "clear_after_seconds", "profile", "group", "device"}
)


def _require(actor: Actor, model: Any, obj: Any, action: str) -> None:
    if not model.objects.for_actor(actor, action).filter(pk=obj.pk).exists():
        raise PermissionDenied(f"You may not {action} this.")


def _rule_payload(rule: AlertRule, **extra: Any) -> dict[str, Any]:
    return {"id": str(rule.pk), "name": rule.name, "kind": rule.kind, **extra}


# --- rules -------------------------------------------------------------------------------------


@transaction.atomic
def rule_create(
    *, actor: Actor, organization: Organization, name: str, kind: str, **fields: Any
) -> AlertRule:
    """Create a rule of ``organization`` (validated: kind, condition, delays, narrowing)."""
    if not actor.has_perm("alertrule.add", organization.path):
        raise PermissionDenied("You may not add alert rules here.")
    unknown = set(fields) - EDITABLE
    if unknown:
        raise ValidationError({key: ["This field cannot be set."] for key in sorted(unknown)})
    rule = AlertRule(organization=organization, kind=kind, created_by_id=actor.user_id)
    for name_, value in {"name": name, **fields}.items():
        setattr(rule, name_, value)
    check_rule(actor, rule)
    rule.save()
    audit.record(
        actor=actor,
        action="alertrule.create",
        obj=rule,
        changes=audit.diff({}, audit.snapshot(rule, RULE_FIELDS)),
    )
    events.emit(
        "alertrule.created",
        organization_id=organization.pk,
        payload=_rule_payload(rule),
        subject=rule,
    )
    cache.bump()
    return rule


@transaction.atomic
def rule_update(*, actor: Actor, rule: AlertRule, **fields: Any) -> AlertRule:
    """Change a rule. A change to what it evaluates restarts its conditions (open alerts stay
    open and clear with the new condition); disabling it resolves its open alerts."""
    unknown = set(fields) - EDITABLE
    if unknown:
        raise ValidationError({key: ["This field cannot be changed."] for key in sorted(unknown)})
    _require(actor, AlertRule, rule, "change")
    rule = AlertRule.objects.select_for_update(of=("self",)).get(pk=rule.pk)
    before = audit.snapshot(rule, RULE_FIELDS)
    for name, value in fields.items():
        setattr(rule, name, value)
    check_rule(actor, rule)
    rule.save()
    changes = audit.diff(before, audit.snapshot(rule, RULE_FIELDS))
    if not changes:
        return rule
    audit.record(actor=actor, action="alertrule.update", obj=rule, changes=changes)
    if "enabled" in changes and not rule.enabled:
        resolve_open_alerts(actor=actor, rule=rule, reason="rule disabled")
        AlertCondition.objects.filter(rule=rule).delete()
    elif set(changes) & EVALUATION_FIELDS:
        reset_conditions(rule)
    if "severity" in changes:  # open alerts take the rule's severity
        Alert.objects.filter(rule=rule).exclude(status=AlertStatus.RESOLVED).update(
            severity=rule.severity, updated_at=timezone.now()
        )
    events.emit(
        "alertrule.updated",
        organization_id=rule.organization_id,
        payload=_rule_payload(rule, changes=changes),
        subject=rule,
    )
    cache.bump()
    return rule


@transaction.atomic
def rule_delete(*, actor: Actor, rule: AlertRule) -> None:
    """Delete a rule: its open alerts are resolved first (events for the notifications), then
    the rule goes with its alerts and conditions. Disable a rule to keep its history."""
    _require(actor, AlertRule, rule, "delete")
    rule = AlertRule.objects.select_for_update(of=("self",)).get(pk=rule.pk)
    resolve_open_alerts(actor=actor, rule=rule, reason="rule deleted")
    audit.record(
        actor=actor,
        action="alertrule.delete",
        obj=rule,
        changes=audit.diff(audit.snapshot(rule, RULE_FIELDS), {}),
    )
    events.emit(
        "alertrule.deleted", organization_id=rule.organization_id, payload=_rule_payload(rule)
    )
    rule.delete()
    cache.bump()


# --- alerts ------------------------------------------------------------------------------------


def _by(actor: Actor) -> str | None:
    """``by`` in the alert events: the user's email, or null (the system, an API key)."""
    return actor.label if actor.user_id is not None else None


def _pair(alert: Alert) -> Q:
    """The alert's (rule, device) pair; a fleet alert's device is null."""
    if alert.device_id is None:
        return Q(rule_id=alert.rule_id, device__isnull=True)
    return Q(rule_id=alert.rule_id, device_id=alert.device_id)


def _locked(actor: Actor, alert: Alert) -> Alert:
    """The alert, locked after its condition row (the pipeline's lock order)."""
    _require(actor, Alert, alert, "change")
    list(
        AlertCondition.objects.select_for_update().filter(_pair(alert)).values_list("id", flat=True)
    )
    return (
        Alert.objects.select_for_update(of=("self",))
        .select_related("rule", "device")
        .get(pk=alert.pk)
    )


def _record(actor: Actor, alert: Alert, verb: str, previous: str, note: str) -> None:
    changes: dict[str, Any] = {"status": [previous, alert.status]}
    if note:
        changes["note"] = note
    audit.record(actor=actor, action=f"alert.{verb}", obj=alert, changes=changes)
    row = {
        "id": alert.pk,
        "rule_id": alert.rule_id,
        "device_id": alert.device_id,
        "serial": alert.device.serial if alert.device is not None else None,
        "severity": alert.severity,
        "message": alert.message,
        "opened_at": alert.opened_at,
    }
    events.emit(
        EVENT_FOR[verb],
        organization_id=alert.organization_id,
        payload=event_payload(row, alert.rule.name, alert.status, by=_by(actor)),
        subject=alert,
    )


@transaction.atomic
def alert_acknowledge(*, actor: Actor, alert: Alert, note: str = "") -> Alert:
    """Someone is on it: an open alert becomes acknowledged (who and when are kept)."""
    alert = _locked(actor, alert)
    if alert.status != AlertStatus.OPEN:
        raise ValidationError({"status": ["Only an open alert can be acknowledged."]})
    alert.status = AlertStatus.ACKNOWLEDGED
    alert.acknowledged_at = timezone.now()
    alert.acknowledged_by_id = actor.user_id
    alert.save(update_fields=["status", "acknowledged_at", "acknowledged_by", "updated_at"])
    _record(actor, alert, "acknowledge", AlertStatus.OPEN, note)
    return alert


@transaction.atomic
def alert_resolve(*, actor: Actor, alert: Alert, note: str = "") -> Alert:
    """Resolve an open or acknowledged alert by hand. Its condition starts over, so a problem
    that persists opens a new alert."""
    alert = _locked(actor, alert)
    if alert.status == AlertStatus.RESOLVED:
        raise ValidationError({"status": ["This alert is already resolved."]})
    previous = alert.status
    alert.status = AlertStatus.RESOLVED
    alert.resolved_at = timezone.now()
    alert.resolved_by_id = actor.user_id
    alert.save(update_fields=["status", "resolved_at", "resolved_by", "updated_at"])
    AlertCondition.objects.filter(_pair(alert)).update(
        breaching=False, breaching_since=None, clearing_since=None, updated_at=alert.resolved_at
    )
    _record(actor, alert, "resolve", previous, note)
    return alert


@transaction.atomic
def alert_reopen(*, actor: Actor, alert: Alert, note: str = "") -> Alert:
    """Put a resolved alert back to open (it was resolved by mistake)."""
    alert = _locked(actor, alert)
    if alert.status != AlertStatus.RESOLVED:
        raise ValidationError({"status": ["Only a resolved alert can be reopened."]})
    other = Alert.objects.filter(_pair(alert)).exclude(status=AlertStatus.RESOLVED)
    if other.exists():
        raise ValidationError({"status": ["Another alert of this rule and device is open."]})
    alert.status = AlertStatus.OPEN
    alert.resolved_at = alert.resolved_by_id = None
    alert.acknowledged_at = alert.acknowledged_by_id = None
    alert.save(
        update_fields=[
            "status",
            "resolved_at",
            "resolved_by",
            "acknowledged_at",
            "acknowledged_by",
            "updated_at",
        ]
    )
    _record(actor, alert, "reopen", AlertStatus.RESOLVED, note)
    return alert
