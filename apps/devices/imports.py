"""Bulk onboarding: a CSV or JSON file of devices becomes devices, as one background job.

The file is checked whole before anything is written (UTF-8, CSV or JSON, a ``serial`` column,
at least one and at most ``DEVICE_IMPORT_MAX_ROWS`` rows): a malformed file fails the job with
one clear error and writes nothing. Then it is read again in chunks of ``CHUNK_ROWS`` rows; each
row is validated (required fields, types, a profile the actor may use in the organization, the
profile version's attributes schema, the allowed initial states) and each chunk commits in one
transaction: its profile versions held against in-place edits (its rows validated again should
a version's schema have changed since: ``import_writes``), one COPY of its good rows into a
temporary staging table, one set-based ``INSERT ... SELECT ... ON CONFLICT (manufacturer_id,
serial) DO NOTHING``, one set-based ``INSERT ... SELECT`` of one audit row per created device,
the rejected rows as job items, one ``devices.imported`` event with the chunk's counts, and the
job's progress and checkpoint.

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
from .import_writes import hold_versions, insert_devices, tuned_interpreter
from .jobs import job_actor, job_cancelled, job_create, job_finish, job_log, job_progress

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
    """One transaction: the chunk's profile versions held (its rows validated again if one
    changed meanwhile), staging COPY, the set-based insert with its audit rows, the rejected
    rows, one event, the progress and the checkpoint."""
    with transaction.atomic():
        hold_versions(job=job, chunk=chunk)
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


# --- running -----------------------------------------------------------------------------------


def import_run(*, job_id: uuid.UUID) -> Job:
    """Run (or resume) an import job. Idempotent: a finished job is left alone, an interrupted
    one continues after its last committed chunk."""
    job = Job.objects.select_related("organization").get(pk=job_id, kind=KIND)
    if job.status == JobStatus.CANCELLED and job.finished_at is None:
        return _close_cancelled(job)  # cancelled while its runner was gone: record where
    if job.status in (JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.CANCELLED):
        return job
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [str(job.pk)])
        if not cursor.fetchone()[0]:  # another worker is running it right now
            return job
    try:
        with tuned_interpreter():  # GIL hand-over and garbage collection for a bulk run
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
    started = (
        Job.objects.filter(pk=job.pk)
        .exclude(status=JobStatus.CANCELLED)  # cancelled since it was read: it never starts
        .update(total=total, status=JobStatus.RUNNING, started_at=job.started_at or timezone.now())
    )
    job.total = total
    cancelled = not started
    if started:
        _log_columns(job, path, fmt)
        cancelled = _process(job, actor, path, fmt, done)
    status = JobStatus.PARTIAL if done.rejected else JobStatus.SUCCEEDED
    with transaction.atomic():
        job_log(job.pk, *_outcome(done, total, cancelled))
        job_finish(job.pk, status=status, result=done.as_result())  # a cancelled job stays so


def _close_cancelled(job: Job) -> Job:
    """A job cancelled while no runner held it (a worker lost mid-run): it writes nothing more;
    its last checkpoint's counts become its result and ``finished_at`` is set."""
    done = Totals(**{k: v for k, v in job.result.items() if k in Totals.__dataclass_fields__})
    with transaction.atomic():
        job_log(job.pk, *_outcome(done, job.total, cancelled=True))
        job_finish(job.pk, status=JobStatus.CANCELLED, result=done.as_result())
    job.refresh_from_db()
    return job


def _outcome(done: Totals, total: int, cancelled: bool) -> tuple[str, str]:
    """The last log line and its level: the counts, and where a cancelled run stopped."""
    counts = f"{done.created} created, {done.unchanged} unchanged, {done.rejected} rejected"
    if not cancelled:
        return f"Done: {counts}.", "info"
    chunks = -(-total // CHUNK_ROWS)
    where = f"Stopped after chunk {done.chunks} of {chunks} ({done.processed} of {total} rows)"
    return f"{where}: {counts}.", "warning"


def _process(job: Job, actor: Actor, path: Path, fmt: str, done: Totals) -> bool:
    """Write the chunks not committed yet; True when the job was cancelled before one of them
    (checked before each chunk: one query)."""
    columns = csv_header(path) if fmt == "csv" else None
    validator = Validator(actor=actor, organization=job.organization, columns=columns)
    # Chunks already committed by an earlier run are validated again (so the serials seen
    # are remembered) but not written.
    pending = (chunk for index, chunk in _chunks(validator, path, fmt) if index > done.chunks)
    if connection.in_atomic_block:  # inside the caller's transaction: its one connection
        for chunk in pending:
            if job_cancelled(job.pk):
                return True
            write_chunk(job=job, actor=actor, chunk=chunk, totals=done)
        return False
    return _write_in_background(job, actor, pending, done)


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


def _write_in_background(job: Job, actor: Actor, chunks: Iterator[Chunk], done: Totals) -> bool:
    """Parsing and validating (Python, this thread) overlap the writes of the previous chunk
    (PostgreSQL, through a writer thread with its own connection), in order, one at a time.
    True when the writer found the job cancelled before a chunk (it then writes no more)."""
    queue: Queue[Chunk | None] = Queue(maxsize=2)
    failures: list[BaseException] = []
    cancelled: list[bool] = []

    def writer() -> None:
        try:
            while (chunk := queue.get()) is not None:
                if failures or cancelled:
                    continue  # keep draining so the reader never blocks
                try:
                    if job_cancelled(job.pk):
                        cancelled.append(True)
                        continue
                    write_chunk(job=job, actor=actor, chunk=chunk, totals=done)
                except BaseException as error:  # re-raised in the reading thread
                    failures.append(error)
        finally:
            connection.close()

    thread = Thread(target=writer, name=f"import-{job.pk}", daemon=True)
    thread.start()
    try:
        for chunk in chunks:
            if failures or cancelled:
                break
            queue.put(chunk)
    finally:
        queue.put(None)
        thread.join()
    if failures:
        raise failures[0]
    return bool(cancelled)


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
