"""Periodic evaluation: the conditions no single message can tell (silence, a fleet's share).

Each task takes every enabled rule of its kind, asks the database which devices the condition
holds for right now (one set-based query per rule, limited to the rule's devices in service),
and feeds the answers to the same conditions as in-batch evaluation, observed at ``now``:

- ``missing_data``: no sample carrying ``condition.metric`` in the last ``seconds`` (an indexed
  probe of the telemetry table per device, limited to that window's partitions), or, with no
  metric, no telemetry at all since ``seconds`` (``LatestValues.metrics_at``).
- ``missed_heartbeats``: the newest heartbeat (``LatestValues.vitals_at``) older than the
  device's heartbeat policy, read exactly as the wellness sweeper reads it
  (``apps.telemetry.wellness``: provisioning record over profile version, plus the last-seen
  granularity).
- ``fleet_offline``: one aggregate per rule over the active devices of its profile or group;
  the alert is the fleet's (no device) and opens once the share stayed above the limit for
  ``condition.minutes``.

A device that never reported is measured from when it entered service or the rule was
created, whichever is later. Devices in maintenance open nothing; an open alert resolves once
the condition no longer holds (``clear_after_seconds`` later). Every task is idempotent: run
twice at the same moment, the second run changes nothing. Each rule runs in its own
transaction, so one failing rule does not hold back the others.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.db import connection, transaction
from django.db.models import Count, DateTimeField, Exists, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from apps.core.scoping import organization_ids_under
from apps.devices.choices import Connectivity, DeviceState
from apps.devices.models import Device

from ..choices import RuleKind
from ..models import AlertCondition, AlertRule, TelemetrySample
from ..wellness import granularity
from . import cache, store
from .rules import CompiledRule, compile_rule

__all__ = ["fleet_offline", "missed_heartbeats", "missing_data", "rule_devices"]

logger = logging.getLogger(__name__)

IN_SERVICE = (DeviceState.ACTIVE.value, DeviceState.MAINTENANCE.value)
MAINTENANCE = DeviceState.MAINTENANCE.value
# device id -> (device state, measured value)
Found = dict[uuid.UUID, tuple[str, dict[str, Any]]]


def rule_devices(snapshot: cache.Snapshot, rule: AlertRule) -> QuerySet[Device]:
    """The devices in service a rule applies to: its organization's subtree, narrowed by its
    profile, group or device."""
    devices = Device.objects.filter(
        organization__in=organization_ids_under([rule.organization.path]), state__in=IN_SERVICE
    )
    if rule.profile_id is not None:
        devices = devices.filter(profile_version__profile_id=rule.profile_id)
    if rule.device_id is not None:
        devices = devices.filter(pk=rule.device_id)
    if rule.group_id is not None:
        devices = devices.filter(snapshot.group_q(rule.group_id))
    return devices


def _since_in_service(rule: AlertRule) -> Greatest:
    return Greatest("state_changed_at", Value(rule.created_at))


def _missing(devices: QuerySet[Device], rule: AlertRule, now: datetime) -> Found:
    seconds = rule.condition["seconds"]
    cutoff = now - timedelta(seconds=seconds)
    metric = rule.condition.get("metric")
    rows: QuerySet[Any]
    if metric:
        recent = TelemetrySample.objects.filter(
            device=OuterRef("pk"), ts__gte=cutoff, ts__lte=now, metrics__has_key=metric
        )
        rows = (
            devices.annotate(
                since=_since_in_service(rule), last=Value(None, output_field=DateTimeField())
            )
            .filter(since__lt=cutoff)
            .exclude(Exists(recent))
        )
    else:
        rows = devices.annotate(
            last=Coalesce("latest__metrics_at", _since_in_service(rule))
        ).filter(last__lt=cutoff)
    return {
        pk: (state, {"silent_s": int((now - last).total_seconds()) if last else None})
        for pk, state, last in rows.values_list("pk", "state", "last")
    }


# A device's heartbeat policy in seconds, as the wellness sweeper reads it: the provisioning
# record's (both numbers, clamped to the profiles' limits; unreadable: the profiles' defaults)
# when the device has one, else its profile version's.
_INTERVAL = "(d.provisioning #> '{heartbeat,interval_seconds}')"
_BEATS = "(d.provisioning #> '{heartbeat,missed_beats}')"
POLICY_SECONDS = (
    "(CASE WHEN d.provisioning ? 'heartbeat' THEN COALESCE("
    f"CASE WHEN jsonb_typeof({_INTERVAL}) = 'number' AND jsonb_typeof({_BEATS}) = 'number' "
    f"THEN NULLIF(GREATEST(LEAST({_INTERVAL}::numeric, 604800), 0) "
    f"* GREATEST(LEAST({_BEATS}::numeric, 1000), 0), 0) END, 180) "
    "ELSE v.heartbeat_interval_seconds * v.heartbeat_missed_beats END)::float8"
)

# only constants are formatted in
MISSED_SQL = f"""
SELECT id, state, last, policy FROM (
    SELECT d.id, d.state, COALESCE(l.vitals_at, GREATEST(d.state_changed_at, %s)) AS last,
           {POLICY_SECONDS} AS policy
    FROM devices_device d
    JOIN profiles_profileversion v ON v.id = d.profile_version_id
    LEFT JOIN telemetry_latest l ON l.device_id = d.id
    WHERE d.id IN (%s)
) s
WHERE last < %s - make_interval(secs => policy + %s)
"""  # noqa: S608


def _missed(devices: QuerySet[Device], rule: AlertRule, now: datetime) -> Found:
    scope, scope_params = devices.values("pk").query.sql_with_params()
    grace = granularity().total_seconds()
    statement = MISSED_SQL.replace("IN (%s)", f"IN ({scope})")
    with connection.cursor() as cursor:
        cursor.execute(statement, [rule.created_at, *scope_params, now, grace])
        rows = cursor.fetchall()
    return {
        pk: (
            state,
            {"silent_s": int((now - last).total_seconds()), "limit_s": int(policy + grace)},
        )
        for pk, state, last, policy in rows
    }


def _fleet(devices: QuerySet[Device], rule: AlertRule) -> tuple[bool, dict[str, Any]]:
    counts = devices.filter(state=DeviceState.ACTIVE).aggregate(
        total=Count("pk"), offline=Count("pk", filter=Q(connectivity=Connectivity.OFFLINE))
    )
    total, offline = counts["total"], counts["offline"]
    percent = round(offline * 100 / total, 1) if total else 0.0
    value = {"offline": offline, "total": total, "percent": percent}
    return bool(total) and percent > rule.condition["percent"], value


def _round(compiled: CompiledRule, found: Found, now: datetime) -> tuple[int, int]:
    """True observations for ``found``; false ones for the rule's devices whose condition
    was pending or breaching and no longer holds."""
    observations: dict[store.Pair, list[store.Observation]] = {
        (compiled.id, pk): [(now, 0, 0, True, value, state == MAINTENANCE)]
        for pk, (state, value) in found.items()
    }
    engaged = AlertCondition.objects.filter(rule_id=compiled.id).filter(
        Q(breaching=True) | Q(breaching_since__isnull=False)
    )
    for device_id in engaged.values_list("device_id", flat=True):
        observations.setdefault((compiled.id, device_id), [(now, 0, 0, False, {}, False)])
    return store.observe({compiled.id: compiled}, observations, now)


def _run(kind: str, check: Callable[..., tuple[int, int]], now: datetime | None) -> tuple[int, int]:
    now = now or timezone.now()
    snapshot = cache.current()
    opened = resolved = 0
    rules = AlertRule.objects.filter(kind=kind, enabled=True).select_related("organization")
    for rule in rules.order_by("id"):
        try:
            with transaction.atomic():
                devices = rule_devices(snapshot, rule)
                counts = check(compile_rule(rule), devices, rule, now)
        except SoftTimeLimitExceeded:
            raise
        except Exception:  # one broken rule must not hold back the others
            logger.exception("alert rule %s (%s): periodic evaluation failed", rule.pk, kind)
            continue
        opened += counts[0]
        resolved += counts[1]
    return opened, resolved


def missing_data(*, now: datetime | None = None) -> tuple[int, int]:
    """Evaluate every missing-data rule; returns (alerts opened, resolved)."""
    return _run(
        RuleKind.MISSING_DATA,
        lambda compiled, devices, rule, at: _round(compiled, _missing(devices, rule, at), at),
        now,
    )


def missed_heartbeats(*, now: datetime | None = None) -> tuple[int, int]:
    """Evaluate every missed-heartbeats rule; returns (alerts opened, resolved)."""
    return _run(
        RuleKind.MISSED_HEARTBEATS,
        lambda compiled, devices, rule, at: _round(compiled, _missed(devices, rule, at), at),
        now,
    )


def _fleet_round(
    compiled: CompiledRule, devices: QuerySet[Device], rule: AlertRule, now: datetime
) -> tuple[int, int]:
    truth, value = _fleet(devices, rule)
    observations: dict[store.Pair, list[store.Observation]] = {
        (compiled.id, None): [(now, 0, 0, truth, value, False)]
    }
    return store.observe({compiled.id: compiled}, observations, now)


def fleet_offline(*, now: datetime | None = None) -> tuple[int, int]:
    """Evaluate every fleet-offline rule; returns (alerts opened, resolved)."""
    return _run(RuleKind.FLEET_OFFLINE, _fleet_round, now)


# --- Celery entry points (CELERY_BEAT_SCHEDULE, every 30 s) ------------------------------------
# No retries: the next beat is the retry, and every run starts from the database's state.

TASK_OPTIONS: dict[str, Any] = {"soft_time_limit": 25, "time_limit": 30, "ignore_result": True}


def _counts(result: tuple[int, int]) -> dict[str, int]:
    return {"opened": result[0], "resolved": result[1]}


@shared_task(name="telemetry.alerts_missing_data", **TASK_OPTIONS)
def missing_data_task() -> dict[str, int]:
    return _counts(missing_data())


@shared_task(name="telemetry.alerts_missed_heartbeats", **TASK_OPTIONS)
def missed_heartbeats_task() -> dict[str, int]:
    return _counts(missed_heartbeats())


@shared_task(name="telemetry.alerts_fleet_offline", **TASK_OPTIONS)
def fleet_offline_task() -> dict[str, int]:
    return _counts(fleet_offline())


@shared_task(name="telemetry.alerts_state_pending", **TASK_OPTIONS)
def state_pending_task() -> dict[str, int]:
    from .state import promote_pending

    return _counts(promote_pending())
