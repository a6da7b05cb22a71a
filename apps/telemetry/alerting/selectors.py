"""Reads of alerting, always scoped to the actor (``for_actor``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Q, QuerySet

from apps.core.actors import Actor
from apps.core.models import AuditLog
from apps.core.scoping import organization_ids_under

from ..choices import SEVERITY_RANK, AlertStatus
from ..models import Alert, AlertRule
from .store import ALERT_TYPE

__all__ = [
    "ACTIVE",
    "alert_counts",
    "alert_list",
    "alert_timeline",
    "device_open_alerts",
    "rule_list",
]

# "active" in filters: not resolved yet (open or acknowledged)
ACTIVE = "active"


def _under(organization_path: str | None) -> Q:
    if organization_path is None:
        return Q()
    return Q(organization__in=organization_ids_under([organization_path]))


def alert_list(
    *,
    actor: Actor,
    organization_path: str | None = None,
    status: str = "",
    severity: str = "",
    device_id: uuid.UUID | None = None,
    rule_id: uuid.UUID | None = None,
) -> QuerySet[Alert]:
    """Alerts the actor may view, newest first; ``status`` may be ``active`` (open or
    acknowledged). ``organization_path`` narrows to one subtree (the portal's current one)."""
    alerts = Alert.objects.for_actor(actor, "view").filter(_under(organization_path))
    if status == ACTIVE:
        alerts = alerts.exclude(status=AlertStatus.RESOLVED)
    elif status:
        alerts = alerts.filter(status=status)
    if severity:
        alerts = alerts.filter(severity=severity)
    if device_id is not None:
        alerts = alerts.filter(device_id=device_id)
    if rule_id is not None:
        alerts = alerts.filter(rule_id=rule_id)
    return alerts.select_related("rule", "device").order_by("-opened_at", "-id")


def device_open_alerts(*, actor: Actor, device_id: uuid.UUID) -> list[Alert]:
    """The device's unresolved alerts the actor may view, most severe first."""
    rows = list(alert_list(actor=actor, status=ACTIVE, device_id=device_id)[:50])
    rows.sort(
        key=lambda alert: (-SEVERITY_RANK.get(alert.severity, 0), -alert.opened_at.timestamp())
    )
    return rows


@dataclass(frozen=True)
class Counts:
    """Unresolved alerts by status and by severity."""

    open: int
    acknowledged: int
    by_severity: dict[str, int]

    @property
    def active(self) -> int:
        return self.open + self.acknowledged


def alert_counts(*, actor: Actor, organization_path: str | None = None) -> Counts:
    """How many unresolved alerts the actor may view (one aggregate query)."""
    unresolved = alert_list(actor=actor, organization_path=organization_path, status=ACTIVE)
    rows = unresolved.order_by().values("status", "severity").annotate(total=Count("id"))
    by_status: dict[str, int] = {}
    by_severity: dict[str, int] = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["total"]
        by_severity[row["severity"]] = by_severity.get(row["severity"], 0) + row["total"]
    return Counts(
        open=by_status.get(AlertStatus.OPEN, 0),
        acknowledged=by_status.get(AlertStatus.ACKNOWLEDGED, 0),
        by_severity=dict(sorted(by_severity.items(), key=lambda item: -SEVERITY_RANK[item[0]])),
    )


def rule_list(
    *, actor: Actor, organization_path: str | None = None, kind: str = "", action: str = "view"
) -> QuerySet[AlertRule]:
    """Rules the actor may ``action``, by name."""
    rules = AlertRule.objects.for_actor(actor, action).filter(_under(organization_path))
    if kind:
        rules = rules.filter(kind=kind)
    return rules.select_related("organization", "profile", "group", "device").order_by("name", "id")


def alert_timeline(*, alert: Alert) -> list[dict[str, Any]]:
    """Who did what to the alert, oldest first: the system's openings and resolutions and
    everyone's acknowledgements, resolutions and reopenings (the audit rows of the alert; the
    caller already checked the actor sees the alert)."""
    rows = AuditLog.objects.filter(object_type=ALERT_TYPE, object_id=str(alert.pk)).order_by(
        "created_at", "id"
    )
    return [
        {
            "at": row.created_at,
            "action": row.action.split(".", 1)[1],
            "who": row.actor_label,
            "system": row.actor_kind == AuditLog.ActorKind.SYSTEM,
            "status": (row.changes.get("status") or [None, None])[1],
            "note": row.changes.get("note", ""),
        }
        for row in rows
    ]
