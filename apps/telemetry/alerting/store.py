"""Set-based reads and writes of conditions and alerts, shared by every evaluator.

Whatever the number of devices, one evaluation round costs the same few statements:

1. ``lock_conditions``: create the missing (rule, device) condition rows (INSERT ... ON CONFLICT
   DO NOTHING) and read all of them locked, in (rule, device) order. Two workers holding
   messages of one device then take turns on its conditions instead of both starting from the
   same state, and the fixed lock order cannot deadlock.
2. ``save_conditions``: one UPDATE from arrays.
3. ``apply_outcomes``: one UPDATE resolving alerts whose condition cleared, one INSERT ... ON
   CONFLICT DO NOTHING opening alerts (the partial unique index keeps one unresolved alert per
   rule and device, so a race or a replay never makes a second), then the domain events and the
   audit rows in two statements each.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from django.db import connection

from apps.core.actors import SYSTEM, Actor
from apps.core.context import get_request_id
from apps.core.ids import uuid7
from apps.core.models import AuditLog
from apps.devices.lifecycle import emit_many

from ..choices import AlertStatus
from .damping import Episode, Tracker
from .rules import CompiledRule

__all__ = [
    "ALERT_TYPE",
    "Outcome",
    "Pair",
    "apply_outcomes",
    "audit_rows",
    "event_payload",
    "lock_conditions",
    "observe",
    "save_conditions",
]

ALERT_TYPE = "telemetry.alert"
Pair = tuple[uuid.UUID, uuid.UUID | None]
# (ts, seq, idx, truth, value, suppress_open): what one sample, event or check said
Observation = tuple[datetime, int, int, bool, Any, bool]

INSERT_CONDITIONS = """
INSERT INTO telemetry_alertcondition (rule_id, device_id, breaching, updated_at)
SELECT p.rule_id, p.device_id, false, %(now)s
FROM unnest(%(rules)s::uuid[], %(devices)s::uuid[]) AS p(rule_id, device_id)
ORDER BY 1, 2
ON CONFLICT (rule_id, device_id) DO NOTHING
"""

# Device pairs join on equality (a hash join, or the unique index); only fleet pairs (no
# device, a handful per run) need IS NOT DISTINCT FROM, which no index or hash join serves.
LOCK_CONDITIONS = """
SELECT p.n, c.id, c.breaching, c.breaching_since, c.clearing_since, c.last_ts
FROM telemetry_alertcondition c
JOIN unnest(%(rules)s::uuid[], %(devices)s::uuid[]) WITH ORDINALITY AS p(rule_id, device_id, n)
  ON c.rule_id = p.rule_id AND {device_match}
ORDER BY c.rule_id, c.device_id NULLS FIRST
FOR UPDATE OF c
"""
DEVICE_MATCH = "c.device_id = p.device_id"
FLEET_MATCH = "c.device_id IS NOT DISTINCT FROM p.device_id"

SAVE_CONDITIONS = """
UPDATE telemetry_alertcondition c
SET breaching = u.breaching, breaching_since = u.breaching_since,
    clearing_since = u.clearing_since, last_ts = u.last_ts, last_value = u.last_value::jsonb,
    updated_at = %(now)s
FROM unnest(%(ids)s::bigint[], %(breaching)s::boolean[], %(breaching_since)s::timestamptz[],
            %(clearing_since)s::timestamptz[], %(last_ts)s::timestamptz[], %(last_value)s::text[])
     AS u(id, breaching, breaching_since, clearing_since, last_ts, last_value)
WHERE c.id = u.id
"""

RESOLVE_ALERTS = """
WITH u AS (
    SELECT * FROM unnest(%(rules)s::uuid[], %(devices)s::uuid[], %(at)s::timestamptz[],
                         %(extra)s::text[]) AS u(rule_id, device_id, at, extra)
), old AS (
    SELECT a.id, a.status, u.at, u.extra
    FROM telemetry_alert a
    JOIN u ON a.rule_id = u.rule_id AND {device_match}
    WHERE NOT (a.status = 'resolved')
    ORDER BY a.id
    FOR UPDATE OF a
), resolved AS (
    UPDATE telemetry_alert a
    SET status = 'resolved', resolved_at = old.at, resolved_by_id = NULL, updated_at = %(now)s,
        details = a.details || old.extra::jsonb
    FROM old
    WHERE a.id = old.id
    RETURNING a.id, a.organization_id, a.rule_id, a.device_id, a.severity, a.message,
              a.opened_at, a.resolved_at, old.status AS previous
)
SELECT r.*, d.serial FROM resolved r LEFT JOIN devices_device d ON d.id = r.device_id
"""

OPEN_ALERTS = """
WITH opened AS (
    INSERT INTO telemetry_alert (id, created_at, updated_at, organization_id, rule_id, device_id,
                                 severity, status, message, details, opened_at, resolved_at)
    SELECT u.id, %(now)s, %(now)s, u.organization_id, u.rule_id, u.device_id, u.severity,
           u.status, u.message, u.details::jsonb, u.opened_at, u.resolved_at
    FROM unnest(%(ids)s::uuid[], %(organizations)s::uuid[], %(rules)s::uuid[],
                %(devices)s::uuid[], %(severities)s::text[], %(statuses)s::text[],
                %(messages)s::text[], %(details)s::text[], %(opened_at)s::timestamptz[],
                %(resolved_at)s::timestamptz[])
         AS u(id, organization_id, rule_id, device_id, severity, status, message, details,
              opened_at, resolved_at)
    ON CONFLICT (rule_id, device_id) WHERE NOT (status = 'resolved') DO NOTHING
    RETURNING id, organization_id, rule_id, device_id, severity, message, opened_at,
              resolved_at
)
SELECT o.*, d.serial FROM opened o LEFT JOIN devices_device d ON d.id = o.device_id
"""


INSERT_COLUMNS = (
    "ids",
    "organizations",
    "rules",
    "devices",
    "severities",
    "statuses",
    "messages",
    "details",
    "opened_at",
    "resolved_at",
)


def _json(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


# Array parameters are sent as PostgreSQL array literals built here: for thousands of elements
# that is an order of magnitude cheaper than adapting each element (the batch's hot path).
def _uuids(values: Iterable[uuid.UUID | None]) -> str:
    return "{" + ",".join(["NULL" if v is None else str(v) for v in values]) + "}"


def _times(values: Iterable[datetime | None]) -> str:
    return "{" + ",".join(["NULL" if v is None else v.isoformat() for v in values]) + "}"


def _flags(values: Iterable[bool]) -> str:
    return "{" + ",".join(["t" if v else "f" for v in values]) + "}"


def _ints(values: Iterable[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def _text_array(values: Iterable[str | None]) -> str:
    return "{" + ",".join("NULL" if v is None else _quoted(v) for v in values) + "}"


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def lock_conditions(pairs: Iterable[Pair], now: datetime) -> dict[Pair, tuple[int, Tracker]]:
    """Every pair's condition row (created when missing), locked until commit."""
    wanted = list(pairs)  # distinct: the callers' dictionary keys; SQL orders the locks
    if not wanted:
        return {}
    devices = [device for _, device in wanted]
    params: dict[str, Any] = {
        "rules": _uuids(rule for rule, _ in wanted),
        "devices": _uuids(devices),
        "now": now,
    }
    fleet = any(device is None for device in devices)
    lock = LOCK_CONDITIONS.format(device_match=FLEET_MATCH if fleet else DEVICE_MATCH)
    found: dict[Pair, tuple[int, Tracker]] = {}
    with connection.cursor() as cursor:
        cursor.execute(INSERT_CONDITIONS, params)
        cursor.execute(lock, params)
        for n, row_id, breaching, since, clearing, last_ts in cursor.fetchall():
            found[wanted[n - 1]] = (row_id, Tracker(breaching, since, clearing, last_ts))
    return found


def save_conditions(rows: Iterable[tuple[int, Tracker]], now: datetime) -> None:
    """Write back the trackers that applied at least one observation."""
    changed = [(row_id, tracker) for row_id, tracker in rows if tracker.applied]
    if not changed:
        return
    trackers = [tracker for _, tracker in changed]
    params: dict[str, Any] = {
        "ids": _ints(row_id for row_id, _ in changed),
        "breaching": _flags(tracker.breaching for tracker in trackers),
        "breaching_since": _times(tracker.breaching_since for tracker in trackers),
        "clearing_since": _times(tracker.clearing_since for tracker in trackers),
        "last_ts": _times(tracker.last_ts for tracker in trackers),
        "last_value": _text_array(_json(tracker.last_value) for tracker in trackers),
        "now": now,
    }
    with connection.cursor() as cursor:
        cursor.execute(SAVE_CONDITIONS, params)


@dataclass(slots=True)
class Outcome:
    """What the observations did to one (rule, device) pair."""

    rule: CompiledRule
    device_id: uuid.UUID | None
    episodes: list[Episode]
    describe: Callable[[Any], str]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Plan:
    resolves: list[tuple[Outcome, Episode]] = field(default_factory=list)
    inserts: list[tuple[Outcome, Episode, str]] = field(default_factory=list)


def _plan(outcomes: Iterable[Outcome]) -> _Plan:
    plan = _Plan()
    for outcome in outcomes:
        pending_open = False
        for episode in outcome.episodes:
            if episode.opened_at is None:  # an alert opened before: resolve it
                if outcome.rule.auto_resolve:
                    plan.resolves.append((outcome, episode))
                continue
            if episode.cleared_at is not None and outcome.rule.auto_resolve:
                plan.inserts.append((outcome, episode, AlertStatus.RESOLVED))
            elif not pending_open:  # one unresolved alert per pair at most
                plan.inserts.append((outcome, episode, AlertStatus.OPEN))
                pending_open = True
    return plan


def apply_outcomes(outcomes: Iterable[Outcome], now: datetime) -> tuple[int, int]:
    """Open and resolve the alerts the outcomes call for; returns (opened, resolved)."""
    plan = _plan(outcomes)
    involved = [item[0] for item in plan.resolves] + [item[0] for item in plan.inserts]
    rules = {outcome.rule.id: outcome.rule for outcome in involved}
    resolved = _resolve(plan.resolves, now)
    opened = _insert(plan.inserts, now)
    also_resolved = [row for row in opened if row["resolved_at"] is not None]
    _announce(rules, opened, also_resolved + resolved)
    return len(opened), len(resolved) + len(also_resolved)


def _rows(cursor: Any) -> list[dict[str, Any]]:
    names = [column.name for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _resolve(items: list[tuple[Outcome, Episode]], now: datetime) -> list[dict[str, Any]]:
    if not items:
        return []
    params: dict[str, Any] = {
        "rules": [outcome.rule.id for outcome, _ in items],
        "devices": [outcome.device_id for outcome, _ in items],
        "at": [episode.cleared_at for _, episode in items],
        "extra": [_json({"resolved_value": episode.cleared_value}) for _, episode in items],
        "now": now,
    }
    with connection.cursor() as cursor:
        fleet = any(device is None for device in params["devices"])
        match = (FLEET_MATCH if fleet else DEVICE_MATCH).replace("c.", "a.").replace("p.", "u.")
        cursor.execute(RESOLVE_ALERTS.format(device_match=match), params)
        return _rows(cursor)


def _insert(items: list[tuple[Outcome, Episode, str]], now: datetime) -> list[dict[str, Any]]:
    if not items:
        return []
    columns: dict[str, list[Any]] = {key: [] for key in INSERT_COLUMNS}
    for outcome, episode, status in items:
        details = {"value": episode.value, "since": episode.since, **outcome.details}
        if episode.cleared_at is not None and status == AlertStatus.RESOLVED:
            details["resolved_value"] = episode.cleared_value
        columns["ids"].append(uuid7())
        columns["organizations"].append(outcome.rule.organization_id)
        columns["rules"].append(outcome.rule.id)
        columns["devices"].append(outcome.device_id)
        columns["severities"].append(outcome.rule.severity)
        columns["statuses"].append(str(status))
        columns["messages"].append(outcome.describe(episode.value)[:500])
        columns["details"].append(_json(details))
        columns["opened_at"].append(episode.opened_at)
        resolved = status == AlertStatus.RESOLVED
        columns["resolved_at"].append(episode.cleared_at if resolved else None)
    with connection.cursor() as cursor:
        cursor.execute(OPEN_ALERTS, {**columns, "now": now})
        return _rows(cursor)


def event_payload(
    row: dict[str, Any], rule_name: str, status: str, by: str | None = None
) -> dict[str, Any]:
    """The payload of ``alert.opened`` / ``.acknowledged`` / ``.resolved`` (a fixed contract:
    the notifications consume it)."""
    return {
        "alert_id": str(row["id"]),
        "rule_id": str(row["rule_id"]),
        "rule_name": rule_name,
        "device_id": str(row["device_id"]) if row["device_id"] is not None else None,
        "device_serial": row.get("serial"),
        "severity": row["severity"],
        "message": row["message"],
        "status": status,
        "opened_at": row["opened_at"].isoformat(),
        "by": by,
    }


def _announce(
    rules: dict[uuid.UUID, CompiledRule],
    opened: list[dict[str, Any]],
    resolved: list[dict[str, Any]],
) -> None:
    """The domain events and the audit rows of the system's own transitions."""
    for event_type, status, rows in (
        ("alert.opened", AlertStatus.OPEN, opened),
        ("alert.resolved", AlertStatus.RESOLVED, resolved),
    ):
        emit_many(
            event_type,
            [
                (
                    row["organization_id"],
                    str(row["id"]),
                    event_payload(row, rules[row["rule_id"]].name, str(status)),
                )
                for row in rows
            ],
            subject_type=ALERT_TYPE,
        )
    audit_rows(opened, "alert.open", lambda row: {"status": [None, AlertStatus.OPEN]})
    audit_rows(
        resolved,
        "alert.resolve",
        lambda row: {"status": [row.get("previous", AlertStatus.OPEN), AlertStatus.RESOLVED]},
    )


def audit_rows(
    rows: list[dict[str, Any]],
    action: str,
    changes: Callable[[dict[str, Any]], dict[str, Any]],
    actor: Actor = SYSTEM,
) -> None:
    """One audit row per alert, in one statement (``audit.record``'s shape)."""
    if not rows:
        return
    request_id = get_request_id()
    AuditLog.objects.bulk_create(
        AuditLog(
            organization_id=row["organization_id"],
            actor_kind=str(actor.kind),
            actor_user_id=actor.user_id,
            actor_api_key_id=actor.api_key_id,
            actor_device_id=actor.device_id,
            actor_label=actor.label[:255],
            source=actor.source,
            action=action,
            object_type=ALERT_TYPE,
            object_id=str(row["id"]),
            object_repr=row["message"][:255],
            changes=changes(row),
            request_id=request_id,
        )
        for row in rows
    )


def observe(
    rules: dict[uuid.UUID, CompiledRule],
    observations: dict[Pair, list[Observation]],
    now: datetime,
) -> tuple[int, int]:
    """Apply each pair's observations (in time order) to its locked condition, save the
    conditions and open / resolve the alerts; returns (opened, resolved)."""
    conditions = lock_conditions(observations, now)
    outcomes: list[Outcome] = []
    for pair, observed in observations.items():
        rule = rules[pair[0]]
        if pair not in conditions:  # its rule or device was deleted meanwhile
            continue
        tracker = conditions[pair][1]
        observed.sort(key=lambda item: item[:3])
        for ts, _seq, _idx, truth, value, suppress in observed:
            tracker.observe(
                ts,
                truth,
                value,
                open_after=rule.open_after,
                clear_after=rule.clear_after,
                suppress_open=suppress,
            )
        if tracker.episodes:
            details = {"metric": rule.metric} if rule.metric else {}
            outcomes.append(Outcome(rule, pair[1], tracker.episodes, rule.describe, details))
    save_conditions(conditions.values(), now)
    return apply_outcomes(outcomes, now)
