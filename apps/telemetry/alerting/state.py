"""State-change rules: an outbox consumer of the devices' connectivity and lifecycle events.

``device.online`` / ``device.offline`` (the connectivity worker and the heartbeat sweeper),
``device.state_changed`` (the lifecycle) and ``configuration.in_sync`` / ``failed`` /
``drifted`` (the configuration's sync status, field ``configuration``) are delivered here at
least once, in any order. Each
delivery becomes one observation per applicable rule, at the event's own time:

- the event moved the field to the rule's ``to`` (from its ``from``, when given): true, unless
  the device has left that value since (a stale event: the later one says so itself);
- any other value: false, the device left the state.

The conditions' ``last_ts`` makes this idempotent and order-proof: a redelivered event, or an
older event arriving after a newer one, is not newer than what its condition has seen and
changes nothing; the partial unique index keeps one unresolved alert per rule and device. As
the device's current value is checked, an event delayed by outbox retries still counts (the
late-data window of samples does not apply here).

``open_after_seconds`` ("offline for 10 minutes") and ``clear_after_seconds`` are honoured by
``promote_pending`` (every 30 s): it re-observes the pending conditions at the current time
against the device's current value.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.configuration.choices import SyncStatus
from apps.configuration.models import DeviceConfigurationState
from apps.core.events import consumer
from apps.core.models import Event
from apps.devices.choices import DeviceState
from apps.devices.models import Device

from ..choices import RuleKind
from ..models import AlertCondition, AlertRule
from . import cache, store
from .rules import CompiledRule, compile_rule

__all__ = ["on_device_change", "promote_pending"]

# apps.configuration's sync status changes: the status each event says the device moved to
CONFIGURATION_EVENTS = {
    "configuration.in_sync": SyncStatus.IN_SYNC.value,
    "configuration.failed": SyncStatus.ERROR.value,
    "configuration.drifted": SyncStatus.DRIFTED.value,
}
EVENTS = ("device.online", "device.offline", "device.state_changed", *CONFIGURATION_EVENTS)
MAINTENANCE = DeviceState.MAINTENANCE.value
# connectivity rules watch devices in service only; lifecycle rules watch every state
IN_SERVICE = (DeviceState.ACTIVE.value, DeviceState.MAINTENANCE.value)


def _field(event_type: str) -> str:
    if event_type in CONFIGURATION_EVENTS:
        return "configuration"
    return "state" if event_type == "device.state_changed" else "connectivity"


def _sync_statuses(device_ids: list[Any]) -> dict[Any, str]:
    """Each device's configuration sync status now (``pending`` when it has none yet)."""
    found = DeviceConfigurationState.objects.filter(device_id__in=device_ids)
    return dict(found.values_list("device_id", "status"))


def _applicable(device: dict[str, Any], field: str) -> list[CompiledRule]:
    snapshot = cache.current()
    organization_id = device["organization_id"]
    snapshot.load([organization_id])
    candidates = [
        rule
        for rule in snapshot.candidates(organization_id, "state")
        if rule.condition["field"] == field
    ]
    group_ids = {rule.group_id for rule in candidates if rule.group_id is not None}
    groups = cache.memberships(snapshot, [device["pk"]], group_ids).get(device["pk"], frozenset())
    profile_id = device["profile_version__profile_id"]
    return [rule for rule in candidates if rule.applies(profile_id, device["pk"], groups)]


@consumer("alerting.state", events=EVENTS)
def on_device_change(event: Event) -> None:
    """Observe one connectivity or lifecycle change for the state-change rules it concerns."""
    field = _field(event.type)
    device_id = event.payload.get("id") or event.subject_id
    device = (
        Device.objects.filter(pk=device_id)
        .values("pk", "organization_id", "state", "connectivity", "profile_version__profile_id")
        .first()
    )
    if device is None or (field == "connectivity" and device["state"] not in IN_SERVICE):
        return
    rules = _applicable(device, field)
    if not rules:
        return
    moved_from, moved_to = event.payload.get("from", ""), event.payload.get("to", "")
    if field == "configuration":
        moved_to = CONFIGURATION_EVENTS[event.type]
        device["configuration"] = _sync_statuses([device["pk"]]).get(
            device["pk"], SyncStatus.PENDING.value
        )
    current = device[field]
    value = {"from": moved_from, "to": moved_to, "event_id": str(event.pk)}
    observations: dict[store.Pair, list[store.Observation]] = {}
    for rule in rules:
        wanted, previous = rule.condition["to"], rule.condition.get("from", "")
        truth = moved_to == wanted and (not previous or moved_from == previous)
        if truth and current != wanted:
            continue  # stale: the device left that state since; its own event tells
        suppress = device["state"] == MAINTENANCE
        observations[(rule.id, device["pk"])] = [(event.created_at, 0, 0, truth, value, suppress)]
    if observations:
        store.observe({rule.id: rule for rule in rules}, observations, timezone.now())


@transaction.atomic
def promote_pending(*, now: datetime | None = None) -> tuple[int, int]:
    """Open the state-change alerts whose ``open_after_seconds`` has passed and resolve those
    whose ``clear_after_seconds`` has, if the device is still where the event left it."""
    now = now or timezone.now()
    pending = (
        AlertCondition.objects.filter(rule__kind=RuleKind.STATE_CHANGE, rule__enabled=True)
        .filter(
            Q(breaching=False, breaching_since__isnull=False)
            | Q(breaching=True, clearing_since__isnull=False)
        )
        .values_list("rule_id", "device_id", "last_value", "device__state", "device__connectivity")
    )
    rows = list(pending)
    if not rows:
        return 0, 0
    rules: dict[uuid.UUID, CompiledRule] = {
        rule.pk: compile_rule(rule)
        for rule in AlertRule.objects.filter(pk__in={row[0] for row in rows})
    }
    synced = _sync_statuses(
        [row[1] for row in rows if rules[row[0]].condition["field"] == "configuration"]
    )
    observations: dict[store.Pair, list[store.Observation]] = {}
    for rule_id, device_id, last_value, state, connectivity in rows:
        rule = rules[rule_id]
        field = rule.condition["field"]
        if field == "configuration":
            current = synced.get(device_id, SyncStatus.PENDING.value)
        else:
            current = state if field == "state" else connectivity
        truth = current == rule.condition["to"]
        value = last_value if truth else {"from": "", "to": current}
        observation = (now, 0, 0, truth, value, state == MAINTENANCE)
        observations[(rule_id, device_id)] = [observation]
    return store.observe(rules, observations, now)
