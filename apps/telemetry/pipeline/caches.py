"""Per-process caches of the pipeline: device facts, compiled telemetry schemas, partitions.

An ingest worker sees the same devices batch after batch, so it keeps what it needs to know
about each one (organization, profile version, state, heartbeat policy) for a short time
(``TELEMETRY_DEVICE_CACHE_SECONDS``, 10 s by default) and reads every uncached device of a
batch in one query. A suspended device may therefore still be accepted for up to that long.
Compiled schemas are kept per profile version and recompiled when the version row's
``updated_at`` (read with the device facts) changes. The days covered by the partitions are
kept as long as the device facts, and forgotten whenever a batch fails.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import connection

from apps.profiles.normalizer import CompiledSchema, compile_schema

from .flat import Plan, plan_for

__all__ = ["STRICT_CAPABILITY", "DeviceInfo", "Schema", "caches"]

# A profile version with this capability dead-letters fields its telemetry schema does not know.
STRICT_CAPABILITY = "telemetry.strict"
MAX_ENTRIES = 200_000  # above this, expired device entries are pruned

DEVICES_SQL = """
SELECT d.id, d.organization_id, d.state, v.profile_id, v.id, v.updated_at,
       COALESCE(CASE WHEN jsonb_typeof(d.provisioning->'heartbeat'->'interval_seconds') = 'number'
                     THEN (d.provisioning->'heartbeat'->>'interval_seconds')::numeric::int END,
                v.heartbeat_interval_seconds),
       COALESCE(CASE WHEN jsonb_typeof(d.provisioning->'heartbeat'->'missed_beats') = 'number'
                     THEN (d.provisioning->'heartbeat'->>'missed_beats')::numeric::int END,
                v.heartbeat_missed_beats),
       %(strict)s = ANY(v.capabilities)
FROM devices_device d JOIN profiles_profileversion v ON v.id = d.profile_version_id
WHERE d.id = ANY(%(ids)s::uuid[])
"""
SCHEMAS_SQL = """
SELECT id, updated_at, telemetry_schema::text FROM profiles_profileversion
WHERE id = ANY(%(ids)s::uuid[])
"""
PARTITIONS_SQL = """
SELECT parent.relname, pg_get_expr(child.relpartbound, child.oid)
FROM pg_inherits i
JOIN pg_class parent ON parent.oid = i.inhparent
JOIN pg_class child ON child.oid = i.inhrelid
WHERE parent.relname IN ('telemetry_sample', 'telemetry_device_event')
  AND parent.relnamespace = current_schema()::regnamespace
"""
BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What the pipeline needs to know about one device."""

    id: uuid.UUID
    organization_id: uuid.UUID
    state: str
    profile_id: uuid.UUID
    version_id: uuid.UUID
    version_updated_at: datetime
    heartbeat_interval_seconds: int
    heartbeat_missed_beats: int
    strict: bool


@dataclass(frozen=True, slots=True)
class Schema:
    """A profile version's compiled schema (``None`` when the stored schema does not compile)
    and its shortcut plan (``flat``)."""

    updated_at: datetime
    compiled: CompiledSchema | None
    plan: Plan | None


Ranges = list[tuple[datetime, datetime]]


class Caches:
    def __init__(self) -> None:
        # keyed by the device id as the topic spells it: a text's hash is cached, a UUID's is not
        self.devices: dict[str, tuple[float, DeviceInfo]] = {}
        self.schemas: dict[uuid.UUID, Schema] = {}
        self.partitions: tuple[float, dict[str, Ranges]] | None = None

    def clear(self) -> None:
        self.devices.clear()
        self.schemas.clear()
        self.partitions = None

    def forget_partitions(self) -> None:
        """Read the partitions afresh next time (a batch failed: one may have been dropped)."""
        self.partitions = None

    def forget(self, keys: Iterable[str]) -> None:
        """Read these devices (and their schemas) afresh next time: a replay after a fix."""
        for key in keys:
            self.devices.pop(key, None)

    # --- devices ---------------------------------------------------------------------------
    def lookup(self, keys: set[str]) -> dict[str, DeviceInfo]:
        """The facts of every known device among ``keys`` (canonical device ids; unknown ones
        are absent), with their schemas loaded: at most two queries, none when all is cached."""
        now = time.monotonic()
        found: dict[str, DeviceInfo] = {}
        missing: list[str] = []
        entries = self.devices
        for key in keys:
            entry = entries.get(key)
            if entry is not None and entry[0] > now:
                found[key] = entry[1]
            else:
                missing.append(key)
        if missing:
            expires = now + settings.TELEMETRY_DEVICE_CACHE_SECONDS
            for info in self._read_devices(missing):
                key = str(info.id)
                entries[key] = (expires, info)
                found[key] = info
            if len(entries) > MAX_ENTRIES:
                self._prune(now)
            self._load_schemas(found.values())
        return found

    def _read_devices(self, ids: list[str]) -> list[DeviceInfo]:
        with connection.cursor() as cursor:
            cursor.execute(DEVICES_SQL, {"ids": ids, "strict": STRICT_CAPABILITY})
            return [DeviceInfo(*row) for row in cursor.fetchall()]

    def _prune(self, now: float) -> None:
        self.devices = {key: entry for key, entry in self.devices.items() if entry[0] > now}

    # --- schemas ---------------------------------------------------------------------------
    def schema(self, info: DeviceInfo) -> Schema:
        """The telemetry schema of the device's profile version (loaded by ``lookup``)."""
        return self.schemas[info.version_id]

    def _load_schemas(self, infos: Any) -> None:
        stale = {
            info.version_id
            for info in infos
            if (cached := self.schemas.get(info.version_id)) is None
            or cached.updated_at != info.version_updated_at
        }
        if not stale:
            return
        with connection.cursor() as cursor:
            cursor.execute(SCHEMAS_SQL, {"ids": list(stale)})
            rows = cursor.fetchall()
        for version_id, updated_at, text in rows:
            compiled = _compile(text)
            plan = plan_for(compiled) if compiled is not None else None
            self.schemas[version_id] = Schema(updated_at, compiled, plan)

    # --- partitions ------------------------------------------------------------------------
    def covered(self) -> dict[str, Ranges]:
        """The time ranges the partitions of each table cover (contiguous days merged)."""
        now = time.monotonic()
        if self.partitions is not None and self.partitions[0] > now:
            return self.partitions[1]
        with connection.cursor() as cursor:
            cursor.execute(PARTITIONS_SQL)
            rows = cursor.fetchall()
        ranges: dict[str, Ranges] = {"telemetry_sample": [], "telemetry_device_event": []}
        for table, bound in rows:
            match = BOUND.search(bound or "")
            if match:
                lower, upper = (datetime.fromisoformat(value) for value in match.groups())
                ranges[table].append((lower, upper))
        merged = {table: _merge(found) for table, found in ranges.items()}
        self.partitions = (now + settings.TELEMETRY_DEVICE_CACHE_SECONDS, merged)
        return merged


def _compile(text: str) -> CompiledSchema | None:
    try:
        return compile_schema(orjson.loads(text))
    except ValueError:  # validated when saved; a row edited by hand must not stop the worker
        return None


def _merge(ranges: Ranges) -> Ranges:
    merged: Ranges = []
    for lower, upper in sorted(ranges):
        if merged and lower <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(upper, merged[-1][1]))
        else:
            merged.append((lower, upper))
    return merged


caches = Caches()
