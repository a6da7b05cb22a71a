"""Cancelling jobs (``jobs.job_cancel``): who may, when, and what the runners do about it.

A queued job never runs; a running one stops before its next chunk, keeps the counts of the
chunks committed so far and says where it stopped. The mid-run cases run the real runners in
threads against the real database: another transaction holds a row the second chunk needs, so
the cancel provably arrives while that chunk is in progress.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connections, transaction

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, Event, Job, JobItem, JobLine, JobStatus
from apps.devices import imports, jobs, services
from apps.devices.models import Device
from apps.profiles.models import ProfileVersion
from tests.accounts.test_consumers import headers_for, live
from tests.factories import actor, make_member

from .registry_support import make_device, make_version
from .test_bulk_transition import fleet
from .test_imports_support import generate, make_catalog, upload

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def lines(job: Job) -> list[tuple[str, str]]:
    return list(JobLine.objects.filter(job=job).order_by("id").values_list("level", "message"))


def import_job(owner, organization, content: str) -> Job:
    """An import job as ``import_start`` makes it, without queueing it to a worker."""
    return jobs.job_create(
        actor=owner,
        organization=organization,
        kind=imports.KIND,
        params={"file_name": "devices.csv"},
        input_file=upload(content),
    )


def bulk_job(who, organization, transition: str = "suspend") -> Job:
    """A bulk transition job as ``device_bulk_transition`` makes it, without queueing it."""
    return jobs.job_create(
        actor=who,
        organization=organization,
        kind=services.BULK_KIND,
        params={"transition": transition, "selection": {}},
    )


# --- queued jobs ---------------------------------------------------------------------------------


def test_a_queued_import_cancelled_before_it_starts_never_runs(tree):
    make_catalog(tree)
    owner = actor(make_member(tree["acme"], Role.OWNER))
    job = imports.import_start(actor=owner, organization=tree["acme"], upload=upload(generate(3)))

    cancelled = jobs.job_cancel(actor=owner, job=job)
    ran = imports.import_run(job_id=job.pk)

    assert (cancelled.status, cancelled.processed, cancelled.result) == ("cancelled", 0, {})
    assert cancelled.finished_at is not None
    assert (ran.status, ran.total, ran.started_at, ran.finished_at) == (
        "cancelled", 0, None, cancelled.finished_at,
    )  # fmt: skip
    assert Device.objects.count() == 0
    assert lines(job) == [("warning", f"Cancelled by {owner.label} before it started.")]
    row = AuditLog.objects.get(action="job.cancel")
    assert (row.organization_id, row.object_type, row.object_id, row.actor_label) == (
        tree["acme"].pk, "core.job", str(job.pk), owner.label,
    )  # fmt: skip
    assert row.changes == {"status": ["queued", "cancelled"]}


def test_a_queued_bulk_transition_cancelled_before_it_starts_never_runs(tree):
    version = make_version(tree["acme"])
    fleet(tree["acme"], version, 3)
    operator = actor(make_member(tree["acme"], Role.OPERATOR))
    job = services.device_bulk_transition(
        actor=operator, organization=tree["acme"], selection={}, transition="suspend"
    )

    jobs.job_cancel(actor=operator, job=job)
    ran = services.bulk_transition_run(job_id=job.pk)

    assert (ran.status, ran.total, ran.processed, ran.started_at) == ("cancelled", 0, 0, None)
    assert set(Device.objects.values_list("state", flat=True)) == {"active"}
    assert JobItem.objects.filter(job=job).count() == 0
    assert lines(job) == [("warning", f"Cancelled by {operator.label} before it started.")]


# --- refusals ------------------------------------------------------------------------------------


def test_a_finished_job_cannot_be_cancelled_and_nothing_changes(tree):
    version = make_version(tree["acme"])
    make_device(tree["acme"], version, "A", state="active")
    make_device(tree["acme"], version, "B", state="escrow")
    job = services.bulk_transition_run(job_id=bulk_job(SYSTEM, tree["acme"]).pk)
    audit_rows = AuditLog.objects.count()

    with pytest.raises(ValidationError) as error:
        jobs.job_cancel(actor=SYSTEM, job=job)

    assert error.value.message_dict == {
        "status": [
            "Only a queued or running job can be cancelled; this one has ended "
            "(Finished with errors)."
        ]
    }
    job.refresh_from_db()
    assert (job.status, job.processed, job.succeeded, job.failed) == ("partial", 2, 1, 1)
    assert (AuditLog.objects.count(), JobLine.objects.filter(job=job).count()) == (audit_rows, 0)


@pytest.mark.parametrize(
    ("role", "kind", "transition", "allowed"),
    [
        (Role.OPERATOR, imports.KIND, "", True),
        (Role.TECHNICIAN, imports.KIND, "", False),
        (Role.TECHNICIAN, services.BULK_KIND, "suspend", True),
        (Role.OPERATOR, services.BULK_KIND, "decommission", False),  # needs device.delete
        (Role.ADMIN, services.BULK_KIND, "decommission", True),
        (Role.VIEWER, services.BULK_KIND, "suspend", False),
    ],
)
def test_cancelling_needs_the_permission_that_starting_that_job_needs(
    tree, role, kind, transition, allowed
):
    params = {"transition": transition, "selection": {}} if transition else {"file_name": "x"}
    job = jobs.job_create(actor=SYSTEM, organization=tree["retail"], kind=kind, params=params)
    who = actor(make_member(tree["acme"], role))

    if allowed:
        assert jobs.job_cancel(actor=who, job=job).status == "cancelled"
    else:
        with pytest.raises(PermissionDenied):
            jobs.job_cancel(actor=who, job=job)
        job.refresh_from_db()
        assert (job.status, AuditLog.objects.filter(action="job.cancel").count()) == ("queued", 0)


# --- running jobs --------------------------------------------------------------------------------


def test_a_job_cancelled_after_its_last_check_still_ends_cancelled_with_its_counts(tree):
    job = bulk_job(SYSTEM, tree["acme"])
    jobs.job_progress(job.pk, processed=5, succeeded=5, failed=0, status=JobStatus.RUNNING)
    jobs.job_cancel(actor=SYSTEM, job=job)

    jobs.job_finish(job.pk, status=JobStatus.SUCCEEDED, result={"moved": 5, "refused": 0})

    job.refresh_from_db()
    assert (job.status, job.result, job.processed) == ("cancelled", {"moved": 5, "refused": 0}, 5)
    assert job.finished_at is not None


def test_a_running_job_cancelled_while_no_worker_runs_it_is_closed_by_the_next_run(tree):
    version = make_version(tree["acme"])
    fleet(tree["acme"], version, 3)
    job = bulk_job(SYSTEM, tree["acme"])
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, total=3)
    cancelled = jobs.job_cancel(actor=SYSTEM, job=job)
    assert (cancelled.status, cancelled.finished_at) == ("cancelled", None)  # still stopping

    ran = services.bulk_transition_run(job_id=job.pk)

    assert (ran.status, ran.processed, ran.result) == ("cancelled", 0, {"moved": 0, "refused": 0})
    assert ran.finished_at is not None
    assert set(Device.objects.values_list("state", flat=True)) == {"active"}
    assert lines(job) == [
        ("warning", "Cancelled by system; stopping after the chunk in progress."),
        ("warning", "Stopped after 0 of 3 devices: 0 moved, 0 refused."),
    ]


def test_an_import_cancelled_while_no_worker_runs_it_is_closed_by_the_next_run(tree):
    make_catalog(tree)
    owner = actor(make_member(tree["acme"], Role.OWNER))
    job = imports.import_start(actor=owner, organization=tree["acme"], upload=upload(generate(3)))
    checkpoint = {"chunks": 1, "created": 2, "unchanged": 0, "rejected": 1}
    Job.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING, total=3, result=checkpoint)
    cancelled = jobs.job_cancel(actor=owner, job=job)
    assert (cancelled.status, cancelled.finished_at) == ("cancelled", None)  # still stopping

    ran = imports.import_run(job_id=job.pk)

    assert ran.status == "cancelled"
    assert ran.finished_at is not None
    assert (ran.result["created"], ran.result["rejected"], ran.result["chunks"]) == (2, 1, 1)
    assert Device.objects.count() == 0  # nothing written after the cancel
    assert lines(job)[-1] == (
        "warning",
        "Stopped after chunk 1 of 1 (3 of 3 rows): 2 created, 0 unchanged, 1 rejected.",
    )
    again = imports.import_run(job_id=job.pk)
    assert (again.finished_at, JobLine.objects.filter(job=job).count()) == (
        ran.finished_at,
        len(lines(job)),
    )


def _lock_waiters() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


def _until(condition: Callable[[], bool]) -> bool:
    """Poll ``condition`` (a lock state of other backends, not a commit) for at most 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def _in_thread(target: Callable[[], Any], results: dict[str, Any], name: str) -> threading.Thread:
    def run() -> None:
        try:
            results[name] = target()
        except Exception as error:  # the assertions below show it
            results[name] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _holding(work: Callable[[], Any], results: dict[str, Any]) -> threading.Event:
    """Run ``work`` in a transaction of another thread and keep it open (then roll it back)
    until the returned event is set."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with transaction.atomic():
            work()
            held.set()
            release.wait(10)
            transaction.set_rollback(True)

    results["holder-thread"] = _in_thread(hold, results, "holder")
    assert held.wait(10)
    return release


def _cancel_during_the_second_chunk(
    job: Job, who: Any, run: Callable[[], Job], hold: Callable[[], Any]
) -> dict[str, Any]:
    """``hold`` blocks the second chunk; the cancel is sent once the runner waits inside it."""
    results: dict[str, Any] = {}
    release = _holding(hold, results)
    runner = _in_thread(run, results, "run")
    assert _until(lambda: _lock_waiters() == 1)  # the runner, inside its second chunk
    canceller = _in_thread(lambda: jobs.job_cancel(actor=who, job=job), results, "cancel")
    # The cancel either commits at once or waits for the chunk's commit (a job row lock).
    assert _until(lambda: not canceller.is_alive() or _lock_waiters() == 2)
    release.set()
    for thread in (results["holder-thread"], runner, canceller):
        thread.join(10)
    return results


@pytest.mark.django_db(transaction=True)
def test_a_bulk_transition_cancelled_during_its_second_chunk_stops_after_it(tree):
    version = make_version(tree["acme"])
    devices = fleet(tree["acme"], version, 6)
    operator = actor(make_member(tree["acme"], Role.OPERATOR))
    job = bulk_job(operator, tree["acme"])
    second = [device.pk for device in devices[2:4]]

    results = _cancel_during_the_second_chunk(
        job,
        operator,
        run=lambda: services.bulk_transition_run(job_id=job.pk, chunk_size=2),
        hold=lambda: list(Device.objects.select_for_update().filter(pk__in=second)),
    )

    cancel, done = results["cancel"], results["run"]
    assert (cancel.status, cancel.processed) == ("cancelled", 4)
    assert (done.status, done.total, done.processed, done.succeeded, done.failed) == (
        "cancelled", 6, 4, 4, 0,
    )  # fmt: skip
    assert done.result == {"cursor": str(devices[3].pk), "moved": 4, "refused": 0}
    assert done.finished_at is not None
    states = list(Device.objects.order_by("pk").values_list("state", flat=True))
    assert states == ["suspended"] * 4 + ["active"] * 2
    assert JobItem.objects.filter(job=job, ok=True).count() == 4
    assert lines(job) == [
        ("warning", f"Cancelled by {operator.label}; stopping after the chunk in progress."),
        ("warning", "Stopped after 4 of 6 devices: 4 moved, 0 refused."),
    ]


@pytest.mark.django_db(transaction=True)
def test_an_import_cancelled_during_its_second_chunk_stops_after_it(tree, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 2)
    make_catalog(tree)
    owner = actor(make_member(tree["acme"], Role.OWNER))
    job = import_job(owner, tree["acme"], generate(6))
    plain = ProfileVersion.objects.get(profile__organization=tree["acme"], profile__slug="plain")

    # An uncommitted device with the serial of row 3: the import's insert of it waits.
    results = _cancel_during_the_second_chunk(
        job,
        owner,
        run=lambda: imports.import_run(job_id=job.pk),  # outside a transaction: a worker
        hold=lambda: make_device(tree["acme"], plain, "SN-0000003"),
    )

    assert results["cancel"].status == "cancelled"
    done = results["run"]
    assert (done.status, done.total, done.processed, done.succeeded, done.failed) == (
        "cancelled", 6, 4, 4, 0,
    )  # fmt: skip
    assert done.result == {"chunks": 2, "created": 4, "unchanged": 0, "rejected": 0}
    assert done.finished_at is not None
    assert list(Device.objects.order_by("serial").values_list("serial", flat=True)) == [
        "SN-0000001", "SN-0000002", "SN-0000003", "SN-0000004",
    ]  # fmt: skip
    assert Event.objects.filter(type="devices.imported").count() == 2
    assert lines(job) == [
        ("warning", f"Cancelled by {owner.label}; stopping after the chunk in progress."),
        (
            "warning",
            "Stopped after chunk 2 of 3 (4 of 6 rows): 4 created, 0 unchanged, 0 rejected.",
        ),
    ]
    assert imports.import_run(job_id=job.pk).processed == 4  # a cancelled job never resumes


@pytest.mark.django_db(transaction=True)
def test_the_cancel_is_pushed_to_the_jobs_organization_after_commit(tree):
    viewer = headers_for(make_member(tree["acme"], Role.VIEWER))
    job = bulk_job(SYSTEM, tree["retail"])

    async def scenario() -> list[Any]:
        from asgiref.sync import sync_to_async

        socket = live(viewer)
        await socket.connect()
        received = [await socket.receive_json_from(timeout=5)]
        await sync_to_async(jobs.job_cancel)(actor=SYSTEM, job=job)
        received.append(await socket.receive_json_from(timeout=5))
        await socket.disconnect()
        return received

    assert async_to_sync(scenario)() == [
        {"type": "hello", "organizations": 4},
        {
            "type": "job.progress", "id": str(job.pk), "kind": services.BULK_KIND,
            "processed": 0, "total": 0, "succeeded": 0, "failed": 0, "status": "cancelled",
            "percent": 0,
        },
    ]  # fmt: skip
