"""In-batch evaluation: the ingest pipeline hands over the rows it just stored.

``evaluate_batch`` runs inside ``process_batch``'s transaction with only the newly stored
samples and events (duplicates never get here). Per batch it costs one cache read for the rule
version, at most two queries the first time it meets an organization, one query for group
memberships when a group-scoped rule applies, and the fixed statements of ``store`` when a rule
applies at all. Everything per sample is a dictionary lookup and one comparison.

- threshold / range rules test every sample (telemetry or heartbeat: vitals are metrics too)
  that carries the rule's metric; a value of the wrong type says nothing.
- event_match rules test every event: a match opens, a ``clear_type`` match clears.
- Late data: a sample or event older than ``ALERT_LATE_DATA_SECONDS`` (300) before ``now``, or
  not newer than the last one its condition applied, is skipped: it never opens or clears.
- Only devices in service are evaluated (``active``, ``maintenance``); in ``maintenance``
  nothing opens and open alerts resolve only on clear data (see ``damping``).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from apps.devices.choices import DeviceState

from ..types import StoredEvent, StoredSample
from . import cache, store
from .rules import CompiledRule

__all__ = ["evaluate_batch", "late_before"]

EVALUATED_STATES = frozenset({DeviceState.ACTIVE.value, DeviceState.MAINTENANCE.value})
MAINTENANCE = DeviceState.MAINTENANCE.value
NO_GROUPS: frozenset[uuid.UUID] = frozenset()

Observation = store.Observation


def late_before(now: datetime) -> datetime:
    """Data older than this never opens or clears an alert."""
    return now - timedelta(seconds=getattr(settings, "ALERT_LATE_DATA_SECONDS", 300))


def evaluate_batch(
    samples: list[StoredSample], events: list[StoredEvent], now: datetime
) -> tuple[int, int]:
    """Evaluate the rules that apply to these new rows; returns (alerts opened, resolved)."""
    oldest = late_before(now)
    samples = [s for s in samples if s.ts >= oldest and s.device_state in EVALUATED_STATES]
    events = [e for e in events if e.ts >= oldest and e.device_state in EVALUATED_STATES]
    if not samples and not events:
        return 0, 0
    snapshot = cache.current()
    snapshot.load({s.organization_id for s in samples} | {e.organization_id for e in events})
    rules = _Applicable(snapshot)
    rules.resolve_groups([(samples, "samples"), (events, "events")])
    observations: dict[store.Pair, list[Observation]] = defaultdict(list)
    for rows in _by_device(samples).values():
        _observe_samples(rules.of(rows[0], "samples"), rows, observations)
    for event in events:
        _observe_event(rules.of(event, "events"), event, observations)
    if not observations:
        return 0, 0
    return store.observe(rules.by_id, observations, now)


class _Applicable:
    """The rules that apply to each device of the batch (narrowed by profile, group, device),
    computed once per device."""

    def __init__(self, snapshot: cache.Snapshot) -> None:
        self.snapshot = snapshot
        self.groups: dict[uuid.UUID, frozenset[uuid.UUID]] = {}
        self.by_id: dict[uuid.UUID, CompiledRule] = {}
        self._cache: dict[tuple[uuid.UUID, str], tuple[CompiledRule, ...]] = {}

    def resolve_groups(self, batches: list[tuple[list[Any], str]]) -> None:
        """One membership query for the devices meeting group-scoped rules."""
        devices: set[uuid.UUID] = set()
        groups: set[uuid.UUID] = set()
        for rows, kinds in batches:
            for organization_id, device_id in {(r.organization_id, r.device_id) for r in rows}:
                for rule in self.snapshot.candidates(organization_id, kinds):
                    if rule.group_id is not None:
                        devices.add(device_id)
                        groups.add(rule.group_id)
        found = cache.memberships(self.snapshot, devices, groups)
        self.groups = {device: found.get(device, NO_GROUPS) for device in devices}

    def of(self, row: StoredSample | StoredEvent, kinds: str) -> tuple[CompiledRule, ...]:
        key = (row.device_id, kinds)
        found = self._cache.get(key)
        if found is None:
            groups = self.groups.get(row.device_id, NO_GROUPS)
            found = tuple(
                rule
                for rule in self.snapshot.candidates(row.organization_id, kinds)
                if rule.applies(row.profile_id, row.device_id, groups)
            )
            for rule in found:
                self.by_id[rule.id] = rule
            self._cache[key] = found
        return found


def _by_device(samples: list[StoredSample]) -> dict[uuid.UUID, list[StoredSample]]:
    grouped: dict[uuid.UUID, list[StoredSample]] = {}
    for sample in samples:
        grouped.setdefault(sample.device_id, []).append(sample)
    return grouped


def _observe_samples(
    rules: tuple[CompiledRule, ...],
    samples: list[StoredSample],
    observations: dict[store.Pair, list[Observation]],
) -> None:
    """One device's samples against the rules that apply to it (per sample: a dictionary
    lookup and one comparison per rule)."""
    for rule in rules:
        metric, test = rule.metric, rule.test
        observed: list[Observation] | None = None
        for sample in samples:
            metrics = sample.metrics
            if metric not in metrics:
                continue
            value = metrics[metric]
            truth = test(value)
            if truth is None:
                continue
            if observed is None:
                observed = observations[(rule.id, sample.device_id)]
            suppress = sample.device_state == MAINTENANCE
            observed.append((sample.ts, sample.seq, sample.idx, truth, value, suppress))


def _observe_event(
    rules: tuple[CompiledRule, ...],
    event: StoredEvent,
    observations: dict[store.Pair, list[Observation]],
) -> None:
    suppress = event.device_state == MAINTENANCE
    for rule in rules:
        truth = rule.test(event)
        if truth is not None:
            value = {"type": event.type, "severity": event.severity, "message": event.message}
            observations[(rule.id, event.device_id)].append(
                (event.ts, event.seq, 0, truth, value, suppress)
            )
