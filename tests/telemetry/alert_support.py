"""Builders shared by the alerting tests (no tests here): rules through the services, stored
samples and events as the pipeline hands them over, and readers of the resulting state."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.accounts.models import Organization
from apps.core.actors import SYSTEM, Actor
from apps.core.models import AuditLog, Event
from apps.devices.choices import DeviceState
from apps.devices.models import Device
from apps.telemetry.alerting import cache, services
from apps.telemetry.choices import SampleKind
from apps.telemetry.models import Alert, AlertCondition, AlertRule
from apps.telemetry.types import StoredEvent, StoredSample

# A fixed "now" for in-batch evaluation (never late by construction: tests pass now=ts).
T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
_seq = itertools.count(1)


@pytest.fixture(autouse=True)
def fresh_alert_cache() -> None:
    """Every test starts with no compiled rules in this process (a test's organizations and
    groups are new, but a group edited without the rule services would not bump the version)."""
    cache._snapshot = None


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_rule(
    organization: Organization,
    kind: str = "threshold",
    condition: dict[str, Any] | None = None,
    *,
    actor: Actor = SYSTEM,
    name: str | None = None,
    **fields: Any,
) -> AlertRule:
    condition = (
        condition
        if condition is not None
        else {"metric": "temperature", "operator": "gt", "value": 80}
    )
    return services.rule_create(
        actor=actor,
        organization=organization,
        name=name or f"{kind} {next(_seq)}",
        kind=kind,
        condition=condition,
        **fields,
    )


def sample(
    device: Device,
    ts: datetime,
    *,
    kind: int = SampleKind.TELEMETRY,
    state: str | None = None,
    seq: int | None = None,
    idx: int = 0,
    **metrics: Any,
) -> StoredSample:
    """A sample as the pipeline hands it over after storing it."""
    return StoredSample(
        device_id=device.pk,
        organization_id=device.organization_id,
        profile_id=device.profile_version.profile_id,
        device_state=state or device.state,
        kind=int(kind),
        ts=ts,
        boot=1,
        seq=seq if seq is not None else next(_seq),
        idx=idx,
        metrics=metrics,
        received_at=ts,
    )


def event(
    device: Device,
    ts: datetime,
    type: str,
    severity: str = "info",
    message: str = "",
    *,
    state: str | None = None,
) -> StoredEvent:
    return StoredEvent(
        device_id=device.pk,
        organization_id=device.organization_id,
        profile_id=device.profile_version.profile_id,
        device_state=state or device.state,
        ts=ts,
        boot=1,
        seq=next(_seq),
        type=type,
        severity=severity,
        message=message,
        data=None,
        received_at=ts,
    )


def alerts(rule: AlertRule | None = None) -> list[tuple[str, str, Any, Any]]:
    """(device serial or "fleet", status, opened_at, resolved_at) of every alert, oldest first."""
    rows = Alert.objects.select_related("device").order_by("opened_at", "id")
    if rule is not None:
        rows = rows.filter(rule=rule)
    return [
        (row.device.serial if row.device else "fleet", row.status, row.opened_at, row.resolved_at)
        for row in rows
    ]


def condition(rule: AlertRule, device: Device | None) -> tuple[Any, ...] | None:
    found = AlertCondition.objects.filter(rule=rule, device=device).first()
    if found is None:
        return None
    return (found.breaching, found.breaching_since, found.clearing_since, found.last_ts)


def alert_events() -> list[tuple[str, dict[str, Any]]]:
    return [
        (row.type, row.payload)
        for row in Event.objects.filter(type__startswith="alert.").order_by("created_at", "id")
    ]


def alert_audit() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (row.action, row.actor_label, row.changes)
        for row in AuditLog.objects.filter(object_type="telemetry.alert").order_by(
            "created_at", "id"
        )
    ]


__all__ = [
    "T0",
    "DeviceState",
    "alert_audit",
    "alert_events",
    "alerts",
    "at",
    "condition",
    "event",
    "fresh_alert_cache",
    "make_rule",
    "sample",
]
