"""The compiled rules, cached per process and invalidated when rules change.

Each process keeps a ``Snapshot``: the organizations' ancestor chains (read off their
materialized paths), the enabled rules compiled per owning organization, and the member
conditions of the groups rules are narrowed by. It fills lazily, one query for the
organizations and one for their rules the first time a batch meets them; after that a batch
costs no query at all to find its rules.

Invalidation: the rule services bump a version counter in the shared cache (Redis), at once and
again after commit (a process that reloaded between the two would otherwise keep the
pre-commit rules). Each batch reads the counter (one GET) and drops the snapshot when it moved.
Changes that do not go through the rule services (an organization moved, a dynamic group's
filter edited) are picked up when the snapshot expires, after ``ALERT_RULE_CACHE_SECONDS``.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.db.models.expressions import RawSQL

from apps.accounts.models import Organization
from apps.core.scoping import organization_ids_under
from apps.devices.choices import GroupKind
from apps.devices.models import Device, DeviceGroup, GroupMembership
from apps.devices.selection import selection_q

from ..models import AlertRule
from .rules import CompiledRule, compile_rule

__all__ = ["Snapshot", "bump", "current", "memberships"]

logger = logging.getLogger(__name__)

VERSION_KEY = "telemetry:alert-rules:version"


def _max_age() -> float:
    return float(getattr(settings, "ALERT_RULE_CACHE_SECONDS", 60))


def bump() -> None:
    """Tell every process that rules changed: now, and once more after commit."""
    _bump()
    transaction.on_commit(_bump)


def _bump() -> None:
    try:
        cache.add(VERSION_KEY, 0, timeout=None)
        cache.incr(VERSION_KEY)
    except Exception:  # the cache is down: the snapshots expire on their own
        logger.warning("could not bump the alert rule version", exc_info=True)


def _version() -> Any:
    try:
        version = cache.get(VERSION_KEY)
        if version is None:  # first use (or the cache was flushed): start the counter
            cache.add(VERSION_KEY, 0, timeout=None)
            version = cache.get(VERSION_KEY)
        return version
    except Exception:  # the cache is down: keep the snapshot until it expires
        logger.warning("could not read the alert rule version", exc_info=True)
        return _snapshot.version if _snapshot is not None else None


@dataclass
class Snapshot:
    version: Any
    loaded_at: float
    # organization -> itself and its ancestors (rules of any of them apply below)
    chains: dict[uuid.UUID, tuple[uuid.UUID, ...]] = field(default_factory=dict)
    by_owner: dict[uuid.UUID, list[CompiledRule]] = field(default_factory=dict)
    groups: dict[uuid.UUID, Q] = field(default_factory=dict)
    _candidates: dict[tuple[uuid.UUID, str], tuple[CompiledRule, ...]] = field(default_factory=dict)

    def load(self, organization_ids: Iterable[uuid.UUID]) -> None:
        """Make sure the rules of these organizations (and above) are loaded."""
        missing = set(organization_ids) - set(self.chains)
        if not missing:
            return
        for pk, path in Organization.objects.filter(pk__in=missing).values_list("pk", "path"):
            self.chains[pk] = tuple(uuid.UUID(segment) for segment in path.split("/") if segment)
        for pk in missing - set(self.chains):  # deleted meanwhile: no rules
            self.chains[pk] = ()
        owners = {owner for pk in missing for owner in self.chains[pk]} - set(self.by_owner)
        if not owners:
            return
        for owner in owners:
            self.by_owner[owner] = []
        rules = AlertRule.objects.filter(organization_id__in=owners, enabled=True).order_by("id")
        for rule in rules:
            self.by_owner[rule.organization_id].append(compile_rule(rule))
        self._load_groups({rule.group_id for rule in rules if rule.group_id is not None})

    def _load_groups(self, group_ids: set[uuid.UUID]) -> None:
        wanted = group_ids - set(self.groups)
        found = DeviceGroup.objects.filter(pk__in=wanted).values_list(
            "pk", "kind", "filter", "organization__path"
        )
        for pk, kind, spec, path in found:
            within = Q(organization__in=organization_ids_under([path]))
            if kind == GroupKind.DYNAMIC:
                try:
                    self.groups[pk] = within & selection_q(spec, parents=(pk,))
                except Exception:  # a filter that no longer validates matches nothing
                    logger.warning("group %s: its filter does not validate", pk, exc_info=True)
                    self.groups[pk] = Q(pk__in=[])
            else:
                members = GroupMembership.objects.filter(group=pk).values("device_id")
                self.groups[pk] = within & Q(pk__in=members)
        for pk in wanted - set(self.groups):  # deleted meanwhile
            self.groups[pk] = Q(pk__in=[])

    def group_q(self, group_id: uuid.UUID) -> Q:
        """The ``Device`` condition of a group's current members (loaded on first use)."""
        if group_id not in self.groups:
            self._load_groups({group_id})
        return self.groups[group_id]

    def candidates(self, organization_id: uuid.UUID, kinds: str) -> tuple[CompiledRule, ...]:
        """The enabled rules of ``kinds`` (a key of ``KINDS``) owned by the organization or
        above it, before narrowing by profile, group or device (call ``load`` first)."""
        key = (organization_id, kinds)
        found = self._candidates.get(key)
        if found is None:
            wanted = KINDS[kinds]
            found = tuple(
                rule
                for owner in self.chains.get(organization_id, ())
                for rule in self.by_owner.get(owner, ())
                if rule.kind in wanted
            )
            self._candidates[key] = found
        return found


KINDS: dict[str, tuple[str, ...]] = {
    "samples": ("threshold", "range"),
    "events": ("event_match",),
    "state": ("state_change",),
}

_snapshot: Snapshot | None = None


def current() -> Snapshot:
    """This process's snapshot, fresh for the rule version the cache holds now."""
    global _snapshot
    version = _version()
    now = time.monotonic()
    if _snapshot is None or _snapshot.version != version or now - _snapshot.loaded_at > _max_age():
        _snapshot = Snapshot(version=version, loaded_at=now)
    return _snapshot


def memberships(
    snapshot: Snapshot, device_ids: Iterable[uuid.UUID], group_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, frozenset[uuid.UUID]]:
    """Which of ``group_ids`` each device belongs to, static and dynamic alike, in one query
    (a UNION ALL of one indexed probe per group, limited to the devices given)."""
    devices = list(set(device_ids))
    groups = sorted(set(group_ids))
    if not devices or not groups:
        return {}
    batch = RawSQL("SELECT unnest(%s::uuid[])", (devices,))
    parts = [
        Device.objects.filter(snapshot.groups.get(group, Q(pk__in=[])), pk__in=batch)
        .order_by()
        .annotate(group_id=RawSQL("%s::uuid", (group,)))
        .values_list("pk", "group_id")
        for group in groups
    ]
    query = parts[0].union(*parts[1:], all=True) if len(parts) > 1 else parts[0]
    found: dict[uuid.UUID, set[uuid.UUID]] = {}
    for device, group in query:
        found.setdefault(device, set()).add(uuid.UUID(str(group)))
    return {device: frozenset(groups) for device, groups in found.items()}
