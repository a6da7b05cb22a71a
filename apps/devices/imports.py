"""Bulk onboarding: a CSV or JSON file of devices becomes devices, as one background job.

The file is checked whole before anything is written (UTF-8, CSV or JSON, a ``serial`` column,
at least one and at most ``DEVICE_IMPORT_MAX_ROWS`` rows): a malformed file fails the job with
one clear error and writes nothing. Then it is read again in chunks of ``CHUNK_ROWS`` rows; each
row is validated (required fields, types, a profile the actor may use in the organization, the
profile version's attributes schema, the allowed initial states) and each chunk commits in one
transaction: one COPY of its good rows into a temporary staging table, one set-based
``INSERT ... SELECT ... ON CONFLICT (manufacturer_id, serial) DO NOTHING``, one set-based
``INSERT ... SELECT`` of one audit row per created device, the rejected rows as job items, one
``devices.imported`` event with the chunk's counts, and the job's progress and checkpoint.

Idempotency: the serial number is the key within a manufacturer. A row whose device already
exists is counted as *unchanged* and the existing device is left exactly as it is (never
updated, never moved): re-uploading a file creates nothing new. A serial repeated inside one
file is rejected from its second occurrence on. A job that dies mid-way resumes from its last
committed chunk when it runs again (``import_run`` is idempotent), so the final state and counts
are those of an uninterrupted run.

Row numbers count data rows from 1 (the CSV header is not a row).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from threading import Thread
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import File
from django.db import connection, transaction
from django.utils import timezone

from apps.core import audit, events
from apps.core.actors import Actor
from apps.core.models import Job, JobItem, JobStatus

from .import_files import ImportFileError, Row, csv_header, inspect, max_bytes, read_rows
from .import_rows import Chunk, Validator
from .jobs import job_actor, job_create, job_finish, job_log, job_progress

KIND = "devices.import"
CHUNK_ROWS = 10_000
COLUMNS = (
    "serial",
    "profile",
    "profile_version",
    "name",
    "tags",
    "attributes",
    "latitude",
    "longitude",
    "state",
)
IGNORED_COLUMNS = ("id", "organization", "claim_code")


# --- starting ----------------------------------------------------------------------------------


def import_start(*, actor: Actor, organization: Any, upload: File[Any]) -> Job:
    """Store the file, create the job, audit it and queue the work after commit."""
    size = upload.size or 0
    if size == 0:
        raise ValidationError({"file": "File is empty."})
    if size > max_bytes():
        raise ValidationError(
            {"file": f"File is too large: {size} bytes (at most {max_bytes()} bytes)."}
        )
    with transaction.atomic():
        job = job_create(
            actor=actor,
            organization=organization,
            kind=KIND,
            params={"file_name": Path(upload.name or "").name},
            input_file=upload,
        )
        audit.record(
            actor=actor,
            action="device.import",
            obj=job,
            changes={"file": [None, job.params["file_name"]]},
        )
        transaction.on_commit(lambda: enqueue(job.pk))
    return job


def enqueue(job_id: uuid.UUID) -> None:
    """Run the job in a worker (or here, when ``DEVICE_IMPORT_INLINE`` is set: tests only)."""
    if getattr(settings, "DEVICE_IMPORT_INLINE", False):
        import_run(job_id=job_id)
        return
    from .import_tasks import run_import

    run_import.apply_async(kwargs={"job_id": str(job_id)})


# --- writing -----------------------------------------------------------------------------------

STAGING = "devices_import_staging"
STAGING_COLUMNS = (
    "id, audit_id, row_number, manufacturer_id, profile_version_id, serial, name, state, tags, "
    "attributes, latitude, longitude"
)
CREATE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS devices_import_staging (
    id uuid, audit_id uuid, row_number integer, manufacturer_id uuid, profile_version_id uuid,
    serial varchar(128), name varchar(200), state varchar(16), tags varchar(64)[],
    attributes jsonb, latitude double precision, longitude double precision
)"""
INSERT_DEVICES = """
INSERT INTO devices_device (
    id, created_at, updated_at, organization_id, manufacturer_id, profile_version_id,
    serial, name, state, state_changed_at, tags, attributes, latitude, longitude,
    inventory, firmware_version, connectivity, claim_code_hash
)
SELECT id, %(now)s, %(now)s, %(organization)s, manufacturer_id, profile_version_id,
    serial, name, state, %(now)s, tags, attributes, latitude, longitude,
    '{}'::jsonb, '', 'unknown', ''
FROM devices_import_staging
ON CONFLICT (manufacturer_id, serial) DO NOTHING
"""
# One audit row per created device. The staging ids are fresh, so the created devices are the
# staging rows whose id is now in devices_device: every row when nothing conflicted (no join).
INSERT_AUDIT = """
INSERT INTO core_auditlog (
    id, created_at, organization_id, actor_kind, actor_user_id, actor_api_key_id,
    actor_device_id, actor_label, source, action, object_type, object_id, object_repr,
    changes, request_id
)
SELECT s.audit_id, %(now)s, %(organization)s, %(actor_kind)s, %(user)s, %(api_key)s, NULL,
    %(label)s, %(source)s, 'device.import', 'devices.device', s.id::text,
    left(coalesce(nullif(s.name, ''), s.serial), 255),
    jsonb_build_object('state', jsonb_build_array(NULL, s.state),
                       'job', jsonb_build_array(NULL, %(job)s::text)),
    ''
FROM devices_import_staging s
"""
ONLY_CREATED = " WHERE EXISTS (SELECT 1 FROM devices_device d WHERE d.id = s.id)"


@dataclass
class Totals:
    chunks: int = 0
    created: int = 0
    unchanged: int = 0
    rejected: int = 0

    @property
    def processed(self) -> int:
        return self.created + self.unchanged + self.rejected

    def as_result(self) -> dict[str, int]:
        return {
            "chunks": self.chunks,
            "created": self.created,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
        }


def write_chunk(*, job: Job, actor: Actor, chunk: Chunk, totals: Totals) -> None:
    """One transaction: staging COPY, the set-based insert with its audit rows, the rejected
    rows, one event, the progress and the checkpoint."""
    with transaction.atomic():
        created = insert_devices(job=job, actor=actor, rows=chunk.good)
        JobItem.objects.bulk_create(
            [JobItem(job=job, key=str(n), ok=False, message=m) for n, m in chunk.rejected]
        )
        totals.chunks += 1
        totals.created += created
        totals.unchanged += len(chunk.good) - created
        totals.rejected += len(chunk.rejected)
        counts = {
            "created": created,
            "unchanged": len(chunk.good) - created,
            "rejected": len(chunk.rejected),
        }
        events.emit(
            "devices.imported",
            organization_id=job.organization_id,
            payload={"job": str(job.pk), "chunk": totals.chunks, **counts},
            subject=job,
        )
        Job.objects.filter(pk=job.pk).update(result=totals.as_result())
        job_progress(
            job.pk,
            processed=totals.processed,
            succeeded=totals.created + totals.unchanged,
            failed=totals.rejected,
        )


def insert_devices(*, job: Job, actor: Actor, rows: list[str]) -> int:
    """COPY ``rows`` (COPY text lines) into the staging table and insert the new devices;
    returns how many were created."""
    if not rows:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(CREATE_STAGING)
        cursor.execute(f"TRUNCATE {STAGING}")
        cursor.execute("SET LOCAL work_mem = '64MB'")  # the audit join hashes in memory
        # A chunk commits with its checkpoint: if a crash loses the last commits, the resumed
        # run redoes exactly those chunks, so the WAL flush need not wait for the disk.
        cursor.execute("SET LOCAL synchronous_commit = off")
        with cursor.cursor.copy(f"COPY {STAGING} ({STAGING_COLUMNS}) FROM STDIN") as copy:
            copy.write("".join(rows))
        values: dict[str, Any] = {
            "now": timezone.now(),
            "organization": job.organization_id,
            "actor_kind": str(actor.kind),
            "user": actor.user_id,
            "api_key": actor.api_key_id,
            "label": actor.label[:255],
            "source": actor.source,
            "job": str(job.pk),
        }
        cursor.execute(INSERT_DEVICES, values)
        created = int(cursor.rowcount)
        if created:
            audit_sql = INSERT_AUDIT if created == len(rows) else INSERT_AUDIT + ONLY_CREATED
            cursor.execute(audit_sql, values)
        return created


# --- running -----------------------------------------------------------------------------------


def import_run(*, job_id: uuid.UUID) -> Job:
    """Run (or resume) an import job. Idempotent: a finished job is left alone, an interrupted
    one continues after its last committed chunk."""
    job = Job.objects.select_related("organization").get(pk=job_id, kind=KIND)
    if job.status in (JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.CANCELLED):
        return job
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [str(job.pk)])
        if not cursor.fetchone()[0]:  # another worker is running it right now
            return job
    try:
        _run(job)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(hashtext(%s))", [str(job.pk)])
    job.refresh_from_db()
    return job


def _run(job: Job) -> None:
    actor = job_actor(job)
    if actor is None or not actor.has_perm("device.add", job.organization.path):
        _fail(job, "The person or key that started this import may no longer add devices here.")
        return
    path = Path(job.input_file.path)
    try:
        fmt, total = inspect(path, job.params.get("file_name", ""))
    except ImportFileError as error:
        _fail(job, str(error))
        return
    done = Totals(**{k: v for k, v in job.result.items() if k in Totals.__dataclass_fields__})
    Job.objects.filter(pk=job.pk).update(
        total=total, status=JobStatus.RUNNING, started_at=job.started_at or timezone.now()
    )
    job.total = total
    _log_columns(job, path, fmt)
    _process(job, actor, path, fmt, done)
    status = JobStatus.PARTIAL if done.rejected else JobStatus.SUCCEEDED
    with transaction.atomic():
        job_log(job.pk, f"Done: {done.created} created, {done.unchanged} unchanged, "
                        f"{done.rejected} rejected.")  # fmt: skip
        job_finish(job.pk, status=status, result=done.as_result())


def _process(job: Job, actor: Actor, path: Path, fmt: str, done: Totals) -> None:
    columns = csv_header(path) if fmt == "csv" else None
    validator = Validator(actor=actor, organization=job.organization, columns=columns)
    # Chunks already committed by an earlier run are validated again (so the serials seen
    # are remembered) but not written.
    pending = (chunk for index, chunk in _chunks(validator, path, fmt) if index > done.chunks)
    if connection.in_atomic_block:  # inside the caller's transaction: its one connection
        for chunk in pending:
            write_chunk(job=job, actor=actor, chunk=chunk, totals=done)
        return
    _write_in_background(job, actor, pending, done)


def _chunks(validator: Validator, path: Path, fmt: str) -> Iterator[tuple[int, Chunk]]:
    batch: list[Row] = []
    index = 0
    for row in read_rows(path, fmt):
        batch.append(row)
        if len(batch) == CHUNK_ROWS:
            index += 1
            yield index, validator.chunk(batch)
            batch = []
    if batch:
        yield index + 1, validator.chunk(batch)


def _write_in_background(job: Job, actor: Actor, chunks: Iterator[Chunk], done: Totals) -> None:
    """Parsing and validating (Python, this thread) overlap the writes of the previous chunk
    (PostgreSQL, through a writer thread with its own connection), in order, one at a time."""
    queue: Queue[Chunk | None] = Queue(maxsize=2)
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            while (chunk := queue.get()) is not None:
                if failures:
                    continue  # keep draining so the reader never blocks
                try:
                    write_chunk(job=job, actor=actor, chunk=chunk, totals=done)
                except BaseException as error:  # re-raised in the reading thread
                    failures.append(error)
        finally:
            connection.close()

    thread = Thread(target=writer, name=f"import-{job.pk}", daemon=True)
    thread.start()
    try:
        for chunk in chunks:
            if failures:
                break
            queue.put(chunk)
    finally:
        queue.put(None)
        thread.join()
    if failures:
        raise failures[0]


def _log_columns(job: Job, path: Path, fmt: str) -> None:
    if fmt != "csv" or job.result.get("chunks"):
        return
    known = (*COLUMNS, *IGNORED_COLUMNS)
    unknown = [c for c in csv_header(path) if c not in known and not c.startswith("attr.")]
    if unknown:
        job_log(job.pk, f"Ignored unknown columns: {', '.join(unknown)}.", level="warning")


def _fail(job: Job, message: str) -> None:
    with transaction.atomic():
        job_log(job.pk, message, level="error")
        job_finish(
            job.pk,
            status=JobStatus.FAILED,
            result={"error": message, "created": 0, "unchanged": 0, "rejected": 0},
        )


def rejected_messages(job: Job) -> dict[int, str]:
    """Row number -> error message of every rejected row of the job."""
    items = JobItem.objects.filter(job=job, ok=False).values_list("key", "message")
    return {int(key): message for key, message in items.iterator(chunk_size=10_000)}
