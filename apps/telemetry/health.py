"""A device's health, derived in SQL from its connectivity and its unresolved alerts.

In order, the first that applies:

- ``unknown``: never seen (connectivity ``unknown`` and no ``last_seen_at``);
- ``offline``: connectivity ``offline`` (its last will, or the heartbeat sweeper);
- ``critical``: an open or acknowledged alert of severity critical or major;
- ``warning``: an open or acknowledged alert of severity minor or warning;
- ``ok``: anything else (info alerts do not count).

The alert tests are correlated ``EXISTS`` probes of the partial index
``telemetry_alert_device_open`` (``device_id WHERE status <> 'resolved'``), evaluated only for
rows the earlier tests did not decide: no per-row Python, no extra query. Devices in
maintenance raise no new alerts, so they show ``ok`` (or ``offline`` / ``unknown``) unless an
alert opened before they entered maintenance is still unresolved; the sweeper leaves their
connectivity to their last will.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import CharField, Count, Exists, OuterRef, Q, QuerySet, Value
from django.db.models.expressions import Case, When

from apps.devices.choices import Connectivity

from .choices import AlertStatus, Health, Severity
from .models import Alert

__all__ = [
    "CRITICAL_SEVERITIES",
    "WARNING_SEVERITIES",
    "alert_health",
    "annotate_health",
    "health_counts",
    "health_expression",
    "health_q",
]

CRITICAL_SEVERITIES = (Severity.CRITICAL.value, Severity.MAJOR.value)
WARNING_SEVERITIES = (Severity.MINOR.value, Severity.WARNING.value)

T = TypeVar("T", bound=QuerySet[Any])

NEVER_SEEN = Q(connectivity=Connectivity.UNKNOWN, last_seen_at__isnull=True)
OFFLINE = Q(connectivity=Connectivity.OFFLINE)


def _open_alert(severities: tuple[str, ...]) -> Exists:
    """An unresolved alert of one of ``severities`` on the outer device (the partial index)."""
    return Exists(
        Alert.objects.filter(
            ~Q(status=AlertStatus.RESOLVED), device=OuterRef("pk"), severity__in=severities
        )
    )


def alert_health() -> Case:
    """The alerts' part of health alone (critical, warning or ok), whatever the connectivity:
    what a live page shows when an offline device comes back online."""
    return Case(
        When(_open_alert(CRITICAL_SEVERITIES), then=Value(Health.CRITICAL.value)),
        When(_open_alert(WARNING_SEVERITIES), then=Value(Health.WARNING.value)),
        default=Value(Health.OK.value),
        output_field=CharField(),
    )


def health_expression() -> Case:
    """The ``health`` of each device row, one of ``Health``'s values."""
    return Case(
        When(NEVER_SEEN, then=Value(Health.UNKNOWN.value)),
        When(OFFLINE, then=Value(Health.OFFLINE.value)),
        default=alert_health(),
        output_field=CharField(),
    )


def annotate_health(devices: T) -> T:
    """``devices`` with a ``health`` annotation (a ``Health`` value) computed in the same query."""
    return devices.annotate(health=health_expression())


def health_q(health: str) -> Q:
    """The devices whose health is ``health``, as plain conditions the planner can turn into
    index scans and semi-/anti-joins (a filter on the annotation would test every row in the
    list's order until a page is full)."""
    critical, warning = _open_alert(CRITICAL_SEVERITIES), _open_alert(WARNING_SEVERITIES)
    seen_and_not_offline = ~NEVER_SEEN & ~OFFLINE
    conditions = {
        Health.UNKNOWN: NEVER_SEEN,
        Health.OFFLINE: OFFLINE,
        Health.CRITICAL: seen_and_not_offline & Q(critical),
        Health.WARNING: seen_and_not_offline & ~Q(critical) & Q(warning),
        Health.OK: seen_and_not_offline & ~Q(critical) & ~Q(warning),
    }
    if health not in conditions:
        raise ValueError(f"unknown health {health!r}")
    return conditions[Health(health)]


def health_counts(devices: QuerySet[Any]) -> dict[str, int]:
    """How many of ``devices`` are in each health state: one GROUP BY query; every ``Health``
    value is a key (0 when none)."""
    rows = (
        devices.order_by()
        .annotate(health=health_expression())
        .values_list("health")
        .annotate(total=Count("pk"))
        .values_list("health", "total")
    )
    counted = dict(rows)
    return {value: counted.get(value, 0) for value in Health.values}
