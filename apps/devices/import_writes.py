"""Writing one import chunk: the profile versions held, the staging COPY, the set-based inserts.

Everything here runs inside the chunk's transaction (``imports.write_chunk``).

Profile versions: a version that no device uses yet is edited in place by ``profile_update``.
The rows of a chunk were validated (in the reading thread, possibly seconds earlier, against
the schemas read when the job started) before the chunk's transaction began, so the chunk first
takes the same ``FOR KEY SHARE`` lock on its versions' profiles as ``device_register`` (see
``hold_profile_versions``), then reads the versions' attributes schemas again: an in-place edit
either committed before (it is read now) or waits for this chunk's commit (and then sees the
version in use, so it makes a new version instead). A schema that changed since the rows were
validated has the chunk's rows of that version validated again against it: the rows that still
pass are written with it, the others are rejected with the message a fresh upload would give.

Also here: the interpreter settings a run uses (``tuned_interpreter``).
"""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection
from django.utils import timezone

from apps.core.actors import Actor
from apps.core.models import Job
from apps.profiles.models import ProfileVersion

from .import_rows import ALLOWED_STATES, Chunk, VersionInfo, schema_fingerprint
from .jobs import job_log
from .services import hold_profile_versions

SWITCH_INTERVAL = 0.0005  # seconds; see tuned_interpreter
GC_THRESHOLD = 50_000  # allocations between two young-generation collections
STAGING = "devices_import_staging"
STAGING_COLUMNS = (
    "id, audit_id, row_number, manufacturer_id, profile_version_id, serial, name, state, tags, "
    "attributes, latitude, longitude"
)
# One round trip: the staging table, made once per connection and emptied at each commit (in
# place, cheaper than a TRUNCATE, which makes a new file and updates the catalog), and the
# chunk transaction's settings.
# synchronous_commit off: a chunk commits with its checkpoint (the job's result), so when a
# crash loses the last commits (at most about three wal_writer_delay periods), the resumed run
# redoes exactly those chunks; and any later synchronous commit flushes ours first. What it
# cannot undo: someone outside the database who read those devices (or the chunk's event) in
# that window saw ids that the resumed run makes anew. Accepted for bulk onboarding.
# work_mem: the audit insert of a chunk where some serials existed joins in memory.
PREPARE = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGING} (
    id uuid, audit_id uuid, row_number integer, manufacturer_id uuid, profile_version_id uuid,
    serial varchar(128), name varchar(200), state varchar(16), tags varchar(64)[],
    attributes jsonb, latitude double precision, longitude double precision
) ON COMMIT DELETE ROWS;
SET LOCAL synchronous_commit = off;
SET LOCAL work_mem = '64MB';
"""
# A chunk written inside a caller's transaction (a savepoint) commits nothing: empty it here.
EMPTY_STAGING = f"TRUNCATE {STAGING}"
INSERT_DEVICES = """
INSERT INTO devices_device (
    id, created_at, updated_at, organization_id, manufacturer_id, profile_version_id,
    serial, name, state, state_changed_at, tags, attributes, latitude, longitude,
    inventory, firmware_version, connectivity, claim_code_hash, provisioning
)
SELECT id, %(now)s, %(now)s, %(organization)s, manufacturer_id, profile_version_id,
    serial, name, state, %(now)s, tags, attributes, latitude, longitude,
    '{}'::jsonb, '', 'unknown', '', '{}'::jsonb
FROM devices_import_staging
ON CONFLICT (manufacturer_id, serial) DO NOTHING
"""
# One audit row per created device. The staging ids are fresh, so the created devices are the
# staging rows whose id is now in devices_device: every row when nothing conflicted (no join).
# Its changes ({"state": [null, <state>], "job": [null, <job>]}) are one constant per initial
# state (the CASE names import_rows.ALLOWED_STATES), made once per chunk: building the object
# row by row cost PostgreSQL a quarter of a second per 100,000 rows.
INSERT_AUDIT = """
INSERT INTO core_auditlog (
    id, created_at, organization_id, actor_kind, actor_user_id, actor_api_key_id,
    actor_device_id, actor_label, source, action, object_type, object_id, object_repr,
    changes, request_id
)
SELECT s.audit_id, %(now)s, %(organization)s, %(actor_kind)s, %(user)s, %(api_key)s, NULL,
    %(label)s, %(source)s, 'device.import', 'devices.device', s.id::text,
    left(coalesce(nullif(s.name, ''), s.serial), 255),
    CASE s.state WHEN 'escrow' THEN %(escrow)s::jsonb WHEN 'active' THEN %(active)s::jsonb
        WHEN 'discovered' THEN %(discovered)s::jsonb END,
    ''
FROM devices_import_staging s
"""
ONLY_CREATED = " WHERE EXISTS (SELECT 1 FROM devices_device d WHERE d.id = s.id)"


def insert_devices(*, job: Job, actor: Actor, rows: list[str]) -> int:
    """COPY ``rows`` (COPY text lines) into the staging table and insert the new devices and
    their audit rows; returns how many were created."""
    if not rows:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(PREPARE)
        if len(connection.atomic_blocks) > 1:
            cursor.execute(EMPTY_STAGING)
        with cursor.cursor.copy(f"COPY {STAGING} ({STAGING_COLUMNS}) FROM STDIN") as copy:
            copy.write("".join(rows))
        changes = {
            str(state): json.dumps({"state": [None, state], "job": [None, str(job.pk)]})
            for state in ALLOWED_STATES
        }
        values: dict[str, Any] = {
            "now": timezone.now(),
            "organization": job.organization_id,
            "actor_kind": str(actor.kind),
            "user": actor.user_id,
            "api_key": actor.api_key_id,
            "label": actor.label[:255],
            "source": actor.source,
            **changes,
        }
        cursor.execute(INSERT_DEVICES, values)
        created = int(cursor.rowcount)
        if created:
            audit_sql = INSERT_AUDIT if created == len(rows) else INSERT_AUDIT + ONLY_CREATED
            cursor.execute(audit_sql, values)
        return created


def hold_versions(*, job: Job, chunk: Chunk) -> None:
    """Hold the profiles of the chunk's versions until the chunk commits, and validate its rows
    again where their version's attributes schema is not the one they were validated against
    (see the module docstring)."""
    if not chunk.versions or chunk.validator is None:
        return
    held = [version.id for version in chunk.versions.values()]
    hold_profile_versions(held)
    # A statement after the lock: after a wait, READ COMMITTED sees the edit committed meanwhile.
    schemas = dict(
        ProfileVersion.objects.filter(pk__in=held).values_list("id", "attributes_schema")
    )
    current: dict[str, VersionInfo | None] = {}
    for key, version in chunk.versions.items():
        if version.id not in schemas:
            current[key] = None
        elif schema_fingerprint(schemas[version.id]) != version.fingerprint:
            current[key], first_seen = chunk.validator.as_now(version, schemas[version.id])
            if first_seen:
                job_log(
                    job.pk,
                    f"Profile {version.label} changed during the import: its rows were "
                    "validated again against its current attributes schema.",
                    level="warning",
                )
    if current:
        chunk.validator.recheck(chunk, current)


@contextmanager
def tuned_interpreter() -> Iterator[None]:
    """Two process-wide interpreter settings for the length of a run, then restored (a Celery
    worker runs one task at a time; anything else in the process only sees them meanwhile).

    Switch interval: while the writer thread writes a chunk, the reading thread validates the
    next ones and holds the GIL, so each reply from PostgreSQL (about fifteen statements per
    chunk) or Redis (the live progress push after commit) waits for it up to the interval, 5 ms
    by default, while PostgreSQL idles (measured: 5.3 ms per round trip against 0.4 ms alone).
    A shorter one hands the GIL over promptly; it only matters while a thread waits for it.

    Garbage collector: a run allocates millions of containers (rows, cells) and makes no
    reference cycles, yet at the default threshold the collector ran about 1,300 times per
    300,000 rows (about 1 s, stopping both threads, the writer's chain included). Collecting
    once per 50,000 allocations instead still collects any cycle a library makes."""
    interval, threshold = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    gc.set_threshold(max(threshold[0], GC_THRESHOLD), *threshold[1:])
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*threshold)
