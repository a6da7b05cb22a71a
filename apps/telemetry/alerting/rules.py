"""Alert rules: validating a rule's kind and condition, and compiling it into a fast evaluator.

``clean_condition`` checks a condition against its kind and returns the cleaned copy, or raises
``ValidationError`` whose keys name the bad part (``condition.metric``, ``open_after_seconds``),
so the API's error envelope and the portal form point at the exact field.

``compile_rule`` turns a saved rule into a ``CompiledRule``: plain attributes and one closure
(``test``) that the ingest pipeline calls per sample value or event, so evaluating thousands of
samples a second costs a dictionary lookup and a comparison each. ``test`` answers ``True``
(breaching), ``False`` (clear) or ``None`` (says nothing: a string where a number was expected,
an event of another type).
"""

from __future__ import annotations

import fnmatch
import operator
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeGuard

from django.core.exceptions import ValidationError

from apps.configuration.choices import SyncStatus
from apps.devices.choices import Connectivity, DeviceState

from ..choices import RuleKind
from ..models import AlertRule

__all__ = [
    "EVENT_SEVERITIES",
    "OPERATORS",
    "CompiledRule",
    "clean_condition",
    "compile_rule",
]

OPERATORS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "gt": (operator.gt, ">"),
    "gte": (operator.ge, "≥"),
    "lt": (operator.lt, "<"),
    "lte": (operator.le, "≤"),
    "eq": (operator.eq, "="),
    "ne": (operator.ne, "≠"),
}
ORDERED = ("gt", "gte", "lt", "lte")
EVENT_SEVERITIES = ("debug", "info", "warning", "error", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(EVENT_SEVERITIES)}
METRIC_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
MAX_DELAY_SECONDS = 7 * 24 * 3600
MIN_MISSING_SECONDS = 10
STATE_FIELDS: dict[str, tuple[str, ...]] = {
    "connectivity": (Connectivity.ONLINE.value, Connectivity.OFFLINE.value),
    # a device in maintenance raises no alerts, so "to maintenance" could never fire
    "state": tuple(value for value in DeviceState.values if value != DeviceState.MAINTENANCE),
    # the configuration's sync status (apps.configuration): "drifted" is drift past tolerance
    "configuration": tuple(SyncStatus.values),
}
# kinds whose alert opens on the event itself: no duration to wait for
INSTANT_KINDS = (RuleKind.EVENT_MATCH.value,)
SAMPLE_KINDS = (RuleKind.THRESHOLD.value, RuleKind.RANGE.value)


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Errors(dict[str, list[str]]):
    def add(self, key: str, message: str) -> None:
        self.setdefault(f"condition.{key}" if key != "condition" else key, []).append(message)


def _only(errors: _Errors, condition: dict[str, Any], allowed: set[str]) -> None:
    for key in sorted(set(condition) - allowed):
        errors.add(key, "Unknown key for this kind of rule.")


def _metric(errors: _Errors, condition: dict[str, Any], required: bool = True) -> None:
    metric = condition.get("metric")
    if metric is None and not required:
        return
    if not isinstance(metric, str) or not METRIC_NAME.match(metric):
        errors.add("metric", "A metric name (letters, digits, _ . -; at most 64).")


def _threshold(errors: _Errors, condition: dict[str, Any]) -> None:
    _only(errors, condition, {"metric", "operator", "value"})
    _metric(errors, condition)
    op = condition.get("operator")
    if op not in OPERATORS:
        errors.add("operator", f"One of: {', '.join(OPERATORS)}.")
    value = condition.get("value")
    if op in ORDERED and not _number(value):
        errors.add("value", "A number.")
    elif not (_number(value) or isinstance(value, (bool, str))):
        errors.add("value", "A number, a boolean or a text.")


def _range(errors: _Errors, condition: dict[str, Any]) -> None:
    _only(errors, condition, {"metric", "low", "high", "inside"})
    _metric(errors, condition)
    low, high = condition.get("low"), condition.get("high")
    for key, value in (("low", low), ("high", high)):
        if not _number(value):
            errors.add(key, "A number.")
    if _number(low) and _number(high) and low > high:
        errors.add("high", "Must be at least low.")
    if not isinstance(condition.get("inside", False), bool):
        errors.add("inside", "true (alert inside the range) or false (outside).")


def _missing_data(errors: _Errors, condition: dict[str, Any]) -> None:
    _only(errors, condition, {"metric", "seconds"})
    _metric(errors, condition, required=False)
    seconds = condition.get("seconds")
    if (
        not isinstance(seconds, int)
        or isinstance(seconds, bool)
        or not MIN_MISSING_SECONDS <= seconds <= MAX_DELAY_SECONDS
    ):
        errors.add("seconds", f"Whole seconds, {MIN_MISSING_SECONDS} to {MAX_DELAY_SECONDS}.")


def _missed_heartbeats(errors: _Errors, condition: dict[str, Any]) -> None:
    _only(errors, condition, set())


def _state_change(errors: _Errors, condition: dict[str, Any]) -> None:
    _only(errors, condition, {"field", "to", "from"})
    name = condition.get("field")
    if name not in STATE_FIELDS:
        errors.add("field", f"One of: {', '.join(STATE_FIELDS)}.")
        return
    allowed = STATE_FIELDS[name]
    if condition.get("to") not in allowed:
        errors.add("to", f"One of: {', '.join(allowed)}.")
    previous = condition.get("from", "")
    if previous != "" and name == "configuration":
        errors.add("from", "Configuration rules watch where the status goes only: leave empty.")
    elif previous != "" and previous not in (*allowed, DeviceState.MAINTENANCE, "unknown"):
        errors.add("from", "Empty (any) or a value of the field.")


def _event_match(errors: _Errors, condition: dict[str, Any]) -> None:
    _only(errors, condition, {"type", "min_severity", "clear_type"})
    for key, required in (("type", True), ("clear_type", False)):
        pattern = condition.get(key)
        if pattern is None and not required:
            continue
        if not isinstance(pattern, str) or not pattern.strip() or len(pattern) > 200:
            errors.add(key, "An event type or a pattern such as door.* (at most 200).")
    if condition.get("min_severity", "debug") not in EVENT_SEVERITIES:
        errors.add("min_severity", f"One of: {', '.join(EVENT_SEVERITIES)}.")


def _fleet_offline(errors: _Errors, condition: dict[str, Any]) -> None:
    _only(errors, condition, {"percent", "minutes"})
    percent = condition.get("percent")
    if not (_number(percent) and 0 <= percent < 100):
        errors.add("percent", "A number from 0 to 99.9: alert above this share offline.")
    minutes = condition.get("minutes")
    if not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 <= minutes <= 1440:
        errors.add("minutes", "Whole minutes, 0 to 1440.")


CHECKS: dict[str, Callable[[_Errors, dict[str, Any]], None]] = {
    RuleKind.THRESHOLD: _threshold,
    RuleKind.RANGE: _range,
    RuleKind.MISSING_DATA: _missing_data,
    RuleKind.MISSED_HEARTBEATS: _missed_heartbeats,
    RuleKind.STATE_CHANGE: _state_change,
    RuleKind.EVENT_MATCH: _event_match,
    RuleKind.FLEET_OFFLINE: _fleet_offline,
}


def _delays(errors: _Errors, kind: str, open_after: Any, clear_after: Any) -> None:
    delays = (("open_after_seconds", open_after), ("clear_after_seconds", clear_after))
    for key, value in delays:
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or not 0 <= value <= MAX_DELAY_SECONDS
        ):
            errors[key] = [f"Whole seconds, 0 to {MAX_DELAY_SECONDS}."]
    if kind in INSTANT_KINDS:
        for key, value in delays:
            if value:
                errors[key] = ["An event rule opens on the event and clears on clear_type: 0."]
    if kind == RuleKind.FLEET_OFFLINE and open_after:
        errors["open_after_seconds"] = ["A fleet rule waits condition.minutes: 0 here."]


def clean_condition(
    *,
    kind: str,
    condition: Any,
    open_after_seconds: Any = 0,
    clear_after_seconds: Any = 0,
    scoped: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The condition of a ``kind`` rule, checked and copied; ``ValidationError`` otherwise.

    ``scoped`` names the rule's profile / group / device (ids or None): at most one of them,
    and a fleet rule needs a profile or a group."""
    if kind not in CHECKS:
        raise ValidationError({"kind": [f"One of: {', '.join(RuleKind.values)}."]})
    errors = _Errors()
    if not isinstance(condition, dict):
        errors.add("condition", "An object.")
    else:
        CHECKS[kind](errors, condition)
    _delays(errors, kind, open_after_seconds, clear_after_seconds)
    _scope(errors, kind, scoped or {})
    if errors:
        raise ValidationError(dict(errors))
    assert isinstance(condition, dict)  # for mypy: refused above otherwise
    return dict(condition)


def _scope(errors: _Errors, kind: str, scoped: dict[str, Any]) -> None:
    named = [key for key in ("profile", "group", "device") if scoped.get(key) is not None]
    if len(named) > 1:
        errors[named[1]] = ["Narrow a rule by one of profile, group or device."]
    if kind == RuleKind.FLEET_OFFLINE and not set(named) & {"profile", "group"}:
        errors["profile"] = ["A fleet rule needs a profile or a group."]


# --- compiled rules ----------------------------------------------------------------------------

Test = Callable[[Any], "bool | None"]


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """What evaluation needs of a rule, in plain attributes (no ORM access)."""

    id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    kind: str
    severity: str
    profile_id: uuid.UUID | None
    group_id: uuid.UUID | None
    device_id: uuid.UUID | None
    open_after: timedelta
    clear_after: timedelta
    auto_resolve: bool
    condition: dict[str, Any]
    metric: str = ""
    test: Test = field(default=lambda value: None, compare=False)
    describe: Callable[[Any], str] = field(default=str, compare=False)

    def applies(self, profile_id: uuid.UUID, device_id: uuid.UUID, groups: frozenset[Any]) -> bool:
        """Whether the rule narrows in this device (its organization was checked already)."""
        return (
            (self.profile_id is None or self.profile_id == profile_id)
            and (self.device_id is None or self.device_id == device_id)
            and (self.group_id is None or self.group_id in groups)
        )


def _threshold_test(condition: dict[str, Any]) -> tuple[Test, Callable[[Any], str]]:
    compare, symbol = OPERATORS[condition["operator"]]
    bound, metric = condition["value"], condition["metric"]
    if condition["operator"] in ORDERED or _number(bound):

        def test(value: Any) -> bool | None:
            if value.__class__ is bool or not isinstance(value, (int, float)):
                return None
            return bool(compare(value, bound))

    else:
        kind = type(bound)

        def test(value: Any) -> bool | None:
            return bool(compare(value, bound)) if value.__class__ is kind else None

    return test, lambda value: f"{metric} {value} {symbol} {bound}"


def _range_test(condition: dict[str, Any]) -> tuple[Test, Callable[[Any], str]]:
    low, high, inside = condition["low"], condition["high"], condition.get("inside", False)
    metric = condition["metric"]
    where = "inside" if inside else "outside"

    def test(value: Any) -> bool | None:
        if value.__class__ is bool or not isinstance(value, (int, float)):
            return None
        return (low <= value <= high) is inside

    return test, lambda value: f"{metric} {value} {where} {low}..{high}"


def _event_test(condition: dict[str, Any]) -> tuple[Test, Callable[[Any], str]]:
    opens = re.compile(fnmatch.translate(condition["type"])).match
    clear = condition.get("clear_type")
    clears = re.compile(fnmatch.translate(clear)).match if clear else None
    minimum = SEVERITY_RANK[condition.get("min_severity", "debug")]

    def test(event: Any) -> bool | None:
        if opens(event.type) and SEVERITY_RANK.get(event.severity, 0) >= minimum:
            return True
        if clears is not None and clears(event.type):
            return False
        return None

    def describe(value: Any) -> str:  # the event as stored in the alert's details
        return f"{value['type']}: {value['message']}" if value.get("message") else value["type"]

    return test, describe


def _periodic_describe(kind: str, condition: dict[str, Any]) -> Callable[[Any], str]:
    """Messages of the kinds checked in SQL: ``value`` is what the check measured."""
    if kind == RuleKind.MISSING_DATA:
        what, limit = condition.get("metric") or "telemetry", condition["seconds"]
        return lambda value: (
            f"No {what} for over {limit} s"
            if value.get("silent_s") is None
            else f"No {what} for {value['silent_s']} s (limit {limit} s)"
        )
    if kind == RuleKind.MISSED_HEARTBEATS:
        return lambda value: f"No heartbeat for {value['silent_s']} s (limit {value['limit_s']} s)"
    if kind == RuleKind.FLEET_OFFLINE:
        return lambda value: (
            f"{value['offline']} of {value['total']} devices offline "
            f"({value['percent']:g}%, limit {condition['percent']:g}%)"
        )
    if kind == RuleKind.STATE_CHANGE:
        label = {"connectivity": "Connectivity", "configuration": "Configuration"}.get(
            condition["field"], "State"
        )
        return lambda value: f"{label} {value['to']} (was {value['from'] or 'unknown'})"
    return str


def compile_rule(rule: AlertRule) -> CompiledRule:
    """The evaluator of one saved (valid) rule."""
    condition = dict(rule.condition)
    test: Test = lambda value: None  # noqa: E731  (periodic and state kinds test in SQL)
    describe = _periodic_describe(rule.kind, condition)
    open_after = timedelta(seconds=rule.open_after_seconds)
    if rule.kind == RuleKind.THRESHOLD:
        test, describe = _threshold_test(condition)
    elif rule.kind == RuleKind.RANGE:
        test, describe = _range_test(condition)
    elif rule.kind == RuleKind.EVENT_MATCH:
        test, describe = _event_test(condition)
    elif rule.kind == RuleKind.FLEET_OFFLINE:
        open_after = timedelta(minutes=condition["minutes"])
    return CompiledRule(
        id=rule.pk,
        organization_id=rule.organization_id,
        name=rule.name,
        kind=rule.kind,
        severity=rule.severity,
        profile_id=rule.profile_id,
        group_id=rule.group_id,
        device_id=rule.device_id,
        open_after=open_after,
        clear_after=timedelta(seconds=rule.clear_after_seconds),
        auto_resolve=rule.auto_resolve,
        condition=condition,
        metric=str(condition.get("metric") or ""),
        test=test,
        describe=describe,
    )


def summarize(kind: str, condition: dict[str, Any]) -> str:
    """A rule's condition in a few words, for lists ("temperature > 80")."""
    if kind == RuleKind.THRESHOLD:
        return f"{condition['metric']} {OPERATORS[condition['operator']][1]} {condition['value']}"
    if kind == RuleKind.RANGE:
        where = "inside" if condition.get("inside") else "outside"
        return f"{condition['metric']} {where} {condition['low']}..{condition['high']}"
    if kind == RuleKind.MISSING_DATA:
        return f"no {condition.get('metric') or 'telemetry'} for {condition['seconds']} s"
    if kind == RuleKind.MISSED_HEARTBEATS:
        return "heartbeats missed (device policy)"
    if kind == RuleKind.STATE_CHANGE:
        since = f"{condition['from']} " if condition.get("from") else ""
        return f"{condition['field']} {since}→ {condition['to']}"
    if kind == RuleKind.EVENT_MATCH:
        text = f"event {condition['type']} ≥ {condition.get('min_severity', 'debug')}"
        clear = condition.get("clear_type")
        return f"{text}, clears on {clear}" if clear else text
    return f"over {condition['percent']:g}% offline for {condition['minutes']} min"
