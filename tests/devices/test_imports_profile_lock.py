"""Bulk import against in-place profile edits: each chunk holds its profile versions like a
registration does, and rows validated against a schema edited since are validated again."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from apps.accounts.models import Organization
from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, Job, JobLine, JobStatus
from apps.devices import imports
from apps.devices.models import Device
from apps.profiles.models import ProfileVersion
from apps.profiles.services import profile_update
from tests.factories import actor, make_member

from .test_imports_support import make_profile, rejected, run, upload

OLD_SCHEMA = {"type": "object", "properties": {"floor": {"type": "integer"}}}
NEW_SCHEMA = {
    "type": "object",
    "properties": {"floor": {"type": "string"}},
    "required": ["floor"],
}
# Valid against OLD_SCHEMA, all four; against NEW_SCHEMA rows 1 and 2 fail, row 3 passes with the
# cell read as text (it was read as an integer for OLD_SCHEMA), row 4 is of another profile.
CONTENT = (
    "serial,profile,attributes,attr.floor\n"
    'M-1,meter,"{""floor"": 1}",\n'
    "M-2,meter,,\n"
    "M-3,meter,,7\n"
    "P-1,plain,,\n"
)


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def profiles(tree: dict[str, Organization]) -> dict[str, ProfileVersion]:
    meter = make_profile(tree["acme"], "meter", schema=OLD_SCHEMA)
    gauge = make_profile(tree["acme"], "gauge", schema={"type": "object"})
    plain = make_profile(tree["acme"], "plain")
    return {
        "meter": meter.versions.get(),
        "gauge": gauge.versions.get(),
        "plain": plain.versions.get(),
    }


def _lock_waiters(thread: threading.Thread, wanted: int) -> int:
    """Polls pg_stat_activity (at most 10 s) until ``wanted`` backends of this test database
    wait for a lock, or ``thread`` ended; returns the last count."""
    deadline, waiting = time.monotonic() + 10, 0
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline and thread.is_alive():
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # fresh inside a transaction too
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            waiting = cursor.fetchone()[0]
            if waiting >= wanted:
                return int(waiting)
            time.sleep(0.01)
    return int(waiting)


def _in_thread(target: Any, results: dict[str, Any], name: str) -> threading.Thread:
    def run_it() -> None:
        try:
            results[name] = target()
        except Exception as error:  # the assertions show it
            results[name] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run_it, daemon=True)
    thread.start()
    return thread


def _devices() -> list[tuple[Any, ...]]:
    return list(
        Device.objects.order_by("serial").values_list("serial", "attributes", "profile_version")
    )


def _import_during_an_uncommitted_edit(
    tree: dict[str, Organization], version: ProfileVersion, content: str
) -> tuple[Job, int, ProfileVersion]:
    """Edit ``version`` in place, start the import before the edit commits, commit once the
    import's chunk waits for the profile lock; the job, the waiters seen, the edited version."""
    owner = actor(make_member(tree["acme"], Role.OWNER))
    job = imports.import_start(actor=owner, organization=tree["acme"], upload=upload(content))
    results: dict[str, Any] = {}
    with transaction.atomic():  # the edit, uncommitted: the import reads the old schema
        latest = profile_update(actor=SYSTEM, profile=version.profile, attributes_schema=NEW_SCHEMA)
        importing = _in_thread(lambda: imports.import_run(job_id=job.pk), results, "job")
        waiting = _lock_waiters(importing, 1)  # the chunk, on the profile's row lock
    importing.join(20)
    return results["job"], waiting, latest


@pytest.mark.django_db(transaction=True)
def test_a_chunk_waiting_for_an_in_place_edit_validates_its_rows_again_against_the_edit(
    tree, profiles
):
    meter = profiles["meter"]
    job, waiting, latest = _import_during_an_uncommitted_edit(tree, meter, CONTENT)

    assert (waiting, latest.pk, latest.number) == (1, meter.pk, 1)  # edited in place
    assert (job.status, job.result) == (
        JobStatus.PARTIAL,
        {"chunks": 1, "created": 2, "unchanged": 0, "rejected": 2},
    )
    assert rejected(job) == [
        ("1", "attributes.floor: 1 is not of type 'string'"),
        ("2", "attributes: 'floor' is a required property"),
    ]
    assert _devices() == [("M-3", {"floor": "7"}, meter.pk), ("P-1", {}, profiles["plain"].pk)]
    assert list(JobLine.objects.filter(job=job).order_by("id").values_list("level", "message")) == [
        (
            "warning",
            "Profile meter v1 changed during the import: its rows were validated again against "
            "its current attributes schema.",
        ),
        ("info", "Done: 2 created, 0 unchanged, 2 rejected."),
    ]
    imported = AuditLog.objects.filter(action="device.import", object_type="devices.device")
    imported = imported.order_by("object_repr")
    assert list(imported.values_list("object_repr", "changes__state")) == [
        ("M-3", [None, "escrow"]),
        ("P-1", [None, "escrow"]),
    ]


@pytest.mark.django_db(transaction=True)
def test_rows_without_attribute_columns_are_validated_again_from_the_json_as_given(tree, profiles):
    gauge = profiles["gauge"]
    content = (
        "serial,profile,attributes\n"
        'G-1,gauge,"{""floor"": 1}"\n'
        "G-2,gauge,\n"
        'G-3,gauge,"{""floor"":\t""7\\\\ b""}"\n'  # a tab and a backslash: escaped for COPY
    )
    job, waiting, latest = _import_during_an_uncommitted_edit(tree, gauge, content)

    assert (waiting, latest.pk, job.result) == (
        1,
        gauge.pk,
        {"chunks": 1, "created": 1, "unchanged": 0, "rejected": 2},
    )
    assert rejected(job) == [
        ("1", "attributes.floor: 1 is not of type 'string'"),
        ("2", "attributes: 'floor' is a required property"),
    ]
    assert _devices() == [("G-3", {"floor": "7\\ b"}, gauge.pk)]


@pytest.mark.django_db(transaction=True)
def test_an_edit_waiting_for_a_chunk_makes_a_new_version_and_the_devices_keep_theirs(
    tree, profiles
):
    owner = actor(make_member(tree["acme"], Role.OWNER))
    job = imports.import_start(actor=owner, organization=tree["acme"], upload=upload(CONTENT))
    meter, results = profiles["meter"], {}
    with transaction.atomic():
        # Holding the organization row stops the chunk at its commit (its deferred foreign-key
        # checks), after it took the profile lock and inserted its devices.
        Organization.objects.select_for_update().get(pk=tree["acme"].pk)
        importing = _in_thread(lambda: imports.import_run(job_id=job.pk), results, "job")
        assert _lock_waiters(importing, 1) == 1
        editing = _in_thread(
            lambda: profile_update(
                actor=SYSTEM, profile=meter.profile, attributes_schema=NEW_SCHEMA
            ),
            results,
            "latest",
        )
        waiting = _lock_waiters(editing, 2)  # the edit, on the chunk's key-share lock
    importing.join(20)
    editing.join(20)

    assert waiting == 2
    job = results["job"]
    assert job.result == {"chunks": 1, "created": 4, "unchanged": 0, "rejected": 0}
    assert list(JobLine.objects.filter(job=job).values_list("level", "message")) == [
        ("info", "Done: 4 created, 0 unchanged, 0 rejected.")  # nothing to validate again
    ]
    latest = results["latest"]
    assert (latest.number, latest.attributes_schema) == (2, NEW_SCHEMA)
    meter.refresh_from_db()
    assert meter.attributes_schema == OLD_SCHEMA
    assert _devices() == [
        ("M-1", {"floor": 1}, meter.pk),
        ("M-2", {}, meter.pk),
        ("M-3", {"floor": 7}, meter.pk),
        ("P-1", {}, profiles["plain"].pk),
    ]


@pytest.mark.django_db
def test_each_chunk_takes_the_key_share_lock_on_its_profiles(tree, profiles, monkeypatch):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 3)
    owner = actor(make_member(tree["acme"], Role.OWNER))
    with CaptureQueriesContext(connections["default"]) as captured:
        job = run(owner, tree["acme"], CONTENT)

    assert job.result == {"chunks": 2, "created": 4, "unchanged": 0, "rejected": 0}
    locks = [query["sql"] for query in captured.captured_queries if "FOR KEY SHARE" in query["sql"]]
    assert len(locks) == 2
    assert all("FOR KEY SHARE OF profile" in sql for sql in locks)
    meter, plain = str(profiles["meter"].pk), str(profiles["plain"].pk)
    assert (meter in locks[0], plain in locks[0]) == (True, False)  # rows 1-3: meter only
    assert (meter in locks[1], plain in locks[1]) == (False, True)  # row 4: plain only
