"""Bulk onboarding against the real database: validation, idempotency, resumption, bad files."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from apps.accounts.roles import Role
from apps.core.models import AuditLog, Event, Job, JobItem, JobLine, JobStatus
from apps.devices import imports
from apps.devices.models import Device
from apps.profiles.models import ProfileVersion
from tests.factories import actor, make_member

from .test_imports_support import csv_text, generate, make_catalog, rejected, run, upload


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def catalog(tree):
    return make_catalog(tree)


@pytest.fixture
def owner(tree):
    return actor(make_member(tree["acme"], Role.OWNER))


def version(profile, number: int) -> ProfileVersion:
    return ProfileVersion.objects.get(profile=profile, number=number)


def devices() -> list[tuple]:
    return list(
        Device.objects.order_by("serial").values_list(
            "serial", "name", "state", "tags", "attributes", "latitude", "longitude"
        )
    )


MIXED = csv_text(
    [
        'A-1,sensor,,Lobby,eu;lab,"{""color"": ""red""}",45.5,-73.25,',
        'A-2,sensor,1,,,"{""color"": ""green""}",,,escrow',
        "A-3,nope,,,,,,,escrow",
        "A-4,plain,,,,,,,maintenance",
        ",plain,,,,,,,",
        "A-6,plain,,Roof,,,91,,active",
        "A-7,camera,,,,,,,",
        "A-8,sensor,3,,,,,,discovered",
        'A-9,plain,,,,"{not json",,,',
        "A-1,plain,,,,,,,",
        "A-10,plain,,Gate,,,,,discovered",
    ]
)


def test_it_keeps_good_rows_and_rejects_each_bad_one_naming_row_and_field(tree, catalog, owner):
    job = run(owner, tree["acme"], MIXED)

    assert (job.status, job.total, job.processed, job.succeeded, job.failed) == (
        JobStatus.PARTIAL, 11, 11, 2, 9,
    )  # fmt: skip
    assert job.result == {"chunks": 1, "created": 2, "unchanged": 0, "rejected": 9}
    assert rejected(job) == [
        ("2", "attributes.color: 'green' is not one of ['red', 'blue']"),
        ("3", "profile: no profile 'nope' available in this organization"),
        ("4", "state: must be one of escrow, active, discovered"),
        ("5", "serial: required"),
        ("6", "latitude: must be between -90 and 90"),
        ("7", "profile: no profile 'camera' available in this organization"),
        ("8", "profile_version: profile 'sensor' has no version 3"),
        ("9", "attributes: not valid JSON"),
        ("10", "serial: appears earlier in this file"),
    ]
    assert devices() == [
        ("A-1", "Lobby", "escrow", ["eu", "lab"], {"color": "red"}, 45.5, -73.25),
        ("A-10", "Gate", "discovered", [], {}, None, None),
    ]
    a1 = Device.objects.get(serial="A-1")
    assert (a1.organization_id, a1.manufacturer_id) == (tree["acme"].pk, tree["acme"].pk)
    assert a1.profile_version_id == version(catalog["sensor"], 2).pk  # the latest by default
    assert (a1.connectivity, a1.inventory, a1.firmware_version, a1.claim_code_hash) == (
        "unknown", {}, "", "",
    )  # fmt: skip
    assert a1.created_at == a1.updated_at == a1.state_changed_at
    assert list(JobLine.objects.filter(job=job).values_list("level", "message")) == [
        ("info", "Done: 2 created, 0 unchanged, 9 rejected.")
    ]


def test_attribute_columns_are_read_with_the_types_the_schema_asks_for(tree, catalog, owner):
    content = (
        "serial,profile,profile_version,attr.color,attr.floor,attr.indoor,claim_code,id\n"
        "B-1,sensor,1,blue,3,true,SECRET,ignored\n"
        "B-2,sensor,1,,x,,,\n"
    )
    job = run(owner, tree["acme"], content)

    assert job.result == {"chunks": 1, "created": 1, "unchanged": 0, "rejected": 1}
    device = Device.objects.get()
    assert (device.serial, device.attributes) == (
        "B-1", {"color": "blue", "floor": 3, "indoor": True},
    )  # fmt: skip
    assert device.profile_version_id == version(catalog["sensor"], 1).pk
    assert rejected(job) == [("2", "attributes.floor: 'x' is not of type 'integer'")]


def test_a_customer_imports_devices_of_a_profile_shared_down_by_its_manufacturer(tree, catalog):
    operator = actor(make_member(tree["retail"], Role.OPERATOR))
    content = f"serial,profile\nR-1,sensor\nR-2,{catalog['plain'].pk}\nR-3,camera\n"
    job = run(operator, tree["retail"], content)

    assert job.result == {"chunks": 1, "created": 2, "unchanged": 0, "rejected": 1}
    assert list(
        Device.objects.order_by("serial").values_list(
            "serial", "organization_id", "manufacturer_id"
        )
    ) == [
        ("R-1", tree["retail"].pk, tree["acme"].pk),
        ("R-2", tree["retail"].pk, tree["acme"].pk),
    ]


def test_json_arrays_and_ndjson_import_like_csv(tree, catalog, owner):
    rows = [
        {"serial": "J-1", "profile": "sensor", "tags": ["a", "b"], "attributes": {"floor": 2}},
        {"serial": "J-2", "profile": "plain", "latitude": 1.25, "longitude": 2, "state": "active"},
        ["not", "an", "object"],
    ]
    array = run(owner, tree["acme"], json.dumps(rows, indent=1), "devices.json")
    lines = "\n".join(json.dumps(row) for row in rows).replace("J-", "N-") + "\n"
    ndjson = run(owner, tree["acme"], lines, "devices.ndjson")

    for job in (array, ndjson):
        assert job.result == {"chunks": 1, "created": 2, "unchanged": 0, "rejected": 1}
        assert rejected(job) == [("3", "row: must be a JSON object")]
    assert devices() == [
        ("J-1", "", "escrow", ["a", "b"], {"floor": 2}, None, None),
        ("J-2", "", "active", [], {}, 1.25, 2.0),
        ("N-1", "", "escrow", ["a", "b"], {"floor": 2}, None, None),
        ("N-2", "", "active", [], {}, 1.25, 2.0),
    ]


def test_it_writes_one_audit_row_per_created_device_and_one_event_per_chunk(
    tree, catalog, owner, monkeypatch
):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 4)
    job = run(owner, tree["acme"], MIXED)

    created = Device.objects.order_by("serial")
    audits = AuditLog.objects.filter(action="device.import", object_type="devices.device")
    assert sorted(audits.values_list("object_id", flat=True)) == sorted(
        str(pk) for pk in created.values_list("pk", flat=True)
    )
    row = audits.get(object_id=str(Device.objects.get(serial="A-1").pk))
    assert (row.organization_id, row.actor_label, row.object_repr) == (
        tree["acme"].pk, owner.label, "Lobby",
    )  # fmt: skip
    assert row.changes == {"state": [None, "escrow"], "job": [None, str(job.pk)]}
    payloads = [
        e.payload for e in Event.objects.filter(type="devices.imported").order_by("created_at")
    ]
    job_id = str(job.pk)
    assert payloads == [
        {"job": job_id, "chunk": 1, "created": 1, "unchanged": 0, "rejected": 3},
        {"job": job_id, "chunk": 2, "created": 0, "unchanged": 0, "rejected": 4},
        {"job": job_id, "chunk": 3, "created": 1, "unchanged": 0, "rejected": 2},
    ]


def test_re_uploading_the_same_file_creates_nothing_and_counts_unchanged(tree, catalog, owner):
    first = run(owner, tree["acme"], MIXED)
    Device.objects.filter(serial="A-1").update(name="Renamed meanwhile")
    second = run(owner, tree["acme"], MIXED)

    assert first.result == {"chunks": 1, "created": 2, "unchanged": 0, "rejected": 9}
    assert second.result == {"chunks": 1, "created": 0, "unchanged": 2, "rejected": 9}
    assert (second.status, second.succeeded, second.failed) == (JobStatus.PARTIAL, 2, 9)
    assert Device.objects.count() == 2
    assert Device.objects.get(serial="A-1").name == "Renamed meanwhile"  # never updated
    assert (
        AuditLog.objects.filter(action="device.import", object_type="devices.device").count() == 2
    )


def test_an_interrupted_import_resumes_to_the_state_of_an_uninterrupted_run(
    tree, catalog, owner, monkeypatch
):
    monkeypatch.setattr(imports, "CHUNK_ROWS", 10)
    content = generate(35, bad_every=7)
    real_write = imports.write_chunk
    calls = {"n": 0}

    def crash_on_third_chunk(**kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("worker killed")
        return real_write(**kwargs)

    monkeypatch.setattr(imports, "write_chunk", crash_on_third_chunk)
    job = imports.import_start(actor=owner, organization=tree["acme"], upload=upload(content))
    with pytest.raises(RuntimeError, match="worker killed"):
        imports.import_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.processed, job.result["chunks"]) == (JobStatus.RUNNING, 20, 2)
    assert Device.objects.count() == 18

    monkeypatch.setattr(imports, "write_chunk", real_write)
    job = imports.import_run(job_id=job.pk)
    again = imports.import_run(job_id=job.pk)  # a finished job is left alone

    assert job.result == again.result == {"chunks": 4, "created": 30, "unchanged": 0, "rejected": 5}
    assert (job.status, job.processed, job.succeeded, job.failed) == (JobStatus.PARTIAL, 35, 30, 5)
    assert Device.objects.count() == 30
    assert [key for key, _ in rejected(job)] == ["7", "14", "21", "28", "35"]
    assert Event.objects.filter(type="devices.imported").count() == 4
    assert (
        AuditLog.objects.filter(action="device.import", object_type="devices.device").count() == 30
    )


@pytest.mark.parametrize(
    ("content", "name", "error"),
    [
        (b"serial,profile\nab\xff\n", "devices.csv", "File is not UTF-8 (byte 18)."),
        (b"name,profile\nx,plain\n", "devices.csv", "Missing column: serial."),
        (b"serial,profile\n", "devices.csv", "File has no rows."),
        (b"\n\n", "devices.csv", "File is empty."),
        (b"serial\nA\n", "devices.xlsx", "File is neither CSV nor JSON."),
        (b'[{"serial": "A"}, {"serial": }]', "d.json", "File is not valid JSON (element 2): "
         "Expecting value."),
        (b'{"serial": "A"}\n{"serial"\n', "d.ndjson", "File is not valid JSON (line 2): "
         "Expecting ':' delimiter."),
        (b'"serial"', "d.json", "File is not valid JSON: expected an array or one object per "
         "line."),
        (b"serial,profile\nA,plain\nB,plain\nC,plain\n", "d.csv", "File has more than 2 rows."),
    ],
)  # fmt: skip
def test_a_malformed_file_fails_the_job_with_a_clear_error_and_writes_nothing(
    tree, catalog, owner, settings, content, name, error
):
    settings.DEVICE_IMPORT_MAX_ROWS = 2
    job = run(owner, tree["acme"], content, name)

    assert (job.status, job.error, job.processed) == (JobStatus.FAILED, error, 0)
    assert job.result == {"error": error, "created": 0, "unchanged": 0, "rejected": 0}
    assert (Device.objects.count(), JobItem.objects.count()) == (0, 0)
    assert not Event.objects.filter(type="devices.imported").exists()
    assert list(JobLine.objects.filter(job=job).values_list("level", "message")) == [
        ("error", error)
    ]


def test_an_empty_or_oversized_upload_is_refused_before_any_work(tree, catalog, owner, settings):
    settings.DEVICE_IMPORT_MAX_BYTES = 10
    with pytest.raises(ValidationError) as empty:
        imports.import_start(actor=owner, organization=tree["acme"], upload=upload(b""))
    with pytest.raises(ValidationError) as large:
        imports.import_start(actor=owner, organization=tree["acme"], upload=upload(b"x" * 11))

    assert empty.value.message_dict == {"file": ["File is empty."]}
    assert large.value.message_dict == {"file": ["File is too large: 11 bytes (at most 10 bytes)."]}
    assert Job.objects.count() == 0


def test_a_starter_who_lost_the_permission_meanwhile_fails_the_job(tree, catalog):
    user = make_member(tree["acme"], Role.OPERATOR)
    job = imports.import_start(
        actor=actor(user), organization=tree["acme"], upload=upload(generate(3))
    )
    user.memberships.update(role=Role.VIEWER)
    job = imports.import_run(job_id=job.pk)

    assert (job.status, Device.objects.count()) == (JobStatus.FAILED, 0)
    assert job.error == "The person or key that started this import may no longer add devices here."


@pytest.mark.slow
def test_a_100k_row_import_creates_exactly_its_good_rows_and_re_uploads_idempotently(
    tree, catalog, owner
):
    content = generate(100_000, bad_every=1000)
    job = run(owner, tree["acme"], content)

    assert (job.status, job.total, job.processed, job.succeeded, job.failed) == (
        JobStatus.PARTIAL, 100_000, 100_000, 99_900, 100,
    )  # fmt: skip
    assert job.result == {"chunks": 10, "created": 99_900, "unchanged": 0, "rejected": 100}
    assert Device.objects.count() == 99_900
    assert AuditLog.objects.filter(
        action="device.import", object_type="devices.device"
    ).count() == (99_900)
    assert Event.objects.filter(type="devices.imported").count() == 10
    assert JobItem.objects.filter(job=job).count() == 100

    again = run(owner, tree["acme"], content)
    assert again.result == {"chunks": 10, "created": 0, "unchanged": 99_900, "rejected": 100}
    assert Device.objects.count() == 99_900


def test_values_postgresql_would_refuse_are_rejected_per_row_not_per_chunk(tree, catalog, owner):
    content = (
        '[{"serial": "OK-1", "profile": "plain"},'
        ' {"serial": "N-1", "profile": "plain", "attributes": {"x": NaN}},'
        ' {"serial": "N-2\\u0000", "profile": "plain"},'
        ' {"serial": "N-3", "profile": "plain", "attributes": {"x": "a\\u0000"}},'
        ' {"serial": "N-4", "profile": "plain", "tags": ["a\\u0000"]},'
        ' {"serial": "N-5", "profile": "plain", "latitude": "NaN"}]'
    )
    job = run(owner, tree["acme"], content, "devices.json")

    assert job.result == {"chunks": 1, "created": 1, "unchanged": 0, "rejected": 5}
    assert rejected(job) == [
        ("2", "attributes: numbers must be finite"),
        ("3", "serial: must not contain NUL characters"),
        ("4", "attributes: text must not contain NUL characters"),
        ("5", "tags: must not contain NUL characters"),
        ("6", "latitude: must be between -90 and 90"),
    ]
    assert list(Device.objects.values_list("serial", flat=True)) == ["OK-1"]


@pytest.mark.django_db(transaction=True)
def test_in_a_worker_the_writes_run_beside_the_validation_and_a_crash_resumes_exactly(
    tree, catalog, owner, monkeypatch
):
    """Outside any transaction (a Celery worker) a writer thread commits chunk after chunk; a
    failure there stops the run, and the next run resumes after the last committed chunk."""
    monkeypatch.setattr(imports, "CHUNK_ROWS", 10)
    real_write = imports.write_chunk
    calls = {"n": 0}

    def crash_on_third_chunk(**kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("database went away")
        return real_write(**kwargs)

    monkeypatch.setattr(imports, "write_chunk", crash_on_third_chunk)
    job = imports.import_start(
        actor=owner, organization=tree["acme"], upload=upload(generate(45, bad_every=9))
    )
    with pytest.raises(RuntimeError, match="database went away"):
        imports.import_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.result["chunks"], Device.objects.count()) == (JobStatus.RUNNING, 2, 18)

    monkeypatch.setattr(imports, "write_chunk", real_write)
    job = imports.import_run(job_id=job.pk)

    assert job.result == {"chunks": 5, "created": 40, "unchanged": 0, "rejected": 5}
    assert (job.status, job.processed, job.percent) == (JobStatus.PARTIAL, 45, 100)
    assert Device.objects.count() == 40
    assert [key for key, _ in rejected(job)] == ["9", "18", "27", "36", "45"]
