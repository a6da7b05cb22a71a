"""Bulk transitions: one job, set-based work, exact per-device items, resumable."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.core import events as core_events
from apps.core.actors import SYSTEM
from apps.core.models import Event, EventDelivery, Job, JobItem
from apps.devices import lifecycle, services
from apps.devices.models import Device
from tests.factories import actor, make_member

from .registry_support import device_audit, make_version

pytestmark = pytest.mark.django_db


def fleet(organization, version, count: int, state: str = "active", prefix: str = "SN"):
    Device.objects.bulk_create(
        Device(
            organization=organization,
            manufacturer=version.profile.organization,
            profile_version=version,
            serial=f"{prefix}-{index:05d}",
            state=state,
        )
        for index in range(count)
    )
    return list(Device.objects.filter(serial__startswith=f"{prefix}-").order_by("pk"))


def start(organization, selection, transition="enter_maintenance", who=SYSTEM) -> Job:
    return services.device_bulk_transition(
        actor=who, organization=organization, selection=selection, transition=transition
    )


def items(job) -> dict[str, tuple[bool, str]]:
    return {row.key: (row.ok, row.message) for row in JobItem.objects.filter(job=job)}


def test_it_moves_a_selection_of_2000_devices_with_exact_items(tree):
    version = make_version(tree["acme"])
    active = fleet(tree["acme"], version, 1900)
    escrow = fleet(tree["retail"], version, 60, state="escrow", prefix="ES")
    already = fleet(tree["acme"], version, 40, state="maintenance", prefix="MT")
    other = fleet(tree["globex"], version, 5, prefix="GX")  # outside the job's organization
    job = start(tree["acme"], {})
    assert (job.kind, job.status, job.params["transition"]) == (
        "devices.bulk_transition",
        "queued",
        "enter_maintenance",
    )
    done = services.bulk_transition_run(job_id=job.pk)
    assert (done.status, done.total, done.processed, done.succeeded, done.failed) == (
        "partial",
        2000,
        2000,
        1940,
        60,
    )
    assert done.result == {
        "cursor": str(max(d.pk for d in active + escrow + already)),
        "moved": 1940,
        "refused": 60,
    }
    expected = {str(d.pk): (True, "") for d in active}
    expected |= {str(d.pk): (True, "Already maintenance.") for d in already}
    expected |= {
        str(d.pk): (False, "Cannot enter_maintenance a device that is escrow.") for d in escrow
    }
    assert items(done) == expected
    states = dict(Device.objects.values_list("serial", "state"))
    assert {states[d.serial] for d in active + already} == {"maintenance"}
    assert {states[d.serial] for d in escrow} == {"escrow"}
    assert {states[d.serial] for d in other} == {"active"}
    audit_rows = device_audit().filter(action="device.transition")
    assert audit_rows.count() == 1900
    first = audit_rows.get(object_id=str(active[0].pk))
    assert first.changes == {
        "state": ["active", "maintenance"],
        "transition": "enter_maintenance",
        "reason": "",
        "job": str(job.pk),
    }
    changed = Event.objects.filter(type="device.state_changed")
    assert changed.count() == 1900
    assert changed.get(subject_id=str(active[0].pk)).payload == {
        "id": str(active[0].pk),
        "transition": "enter_maintenance",
        "reason": "",
        "from": "active",
        "to": "maintenance",
    }


@pytest.mark.parametrize("count", [20, 2000])
def test_the_number_of_queries_does_not_depend_on_the_count(tree, count, django_assert_num_queries):
    version = make_version(tree["acme"])
    fleet(tree["acme"], version, count)
    job = start(tree["acme"], {"state": ["active"]})
    # the same fixed number whether the selection holds 20 devices or 2,000 (savepoints
    # included): set-based, never a statement per device; each chunk's transaction (and the
    # last, empty one) starts with the cancellation check; the state events' deliveries to
    # their consumer (alerting's state-change rules) are one INSERT
    with django_assert_num_queries(24):
        done = services.bulk_transition_run(job_id=job.pk)
    assert (done.succeeded, done.failed) == (count, 0)


def test_a_retry_resumes_after_the_last_committed_chunk(tree, monkeypatch):
    version = make_version(tree["acme"])
    devices = fleet(tree["acme"], version, 25)
    job = start(tree["acme"], {}, transition="suspend")
    real = lifecycle.apply_chunk
    calls = []

    def crash_on_the_third_chunk(**kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise ConnectionError("worker lost")
        return real(**kwargs)

    monkeypatch.setattr(lifecycle, "apply_chunk", crash_on_the_third_chunk)
    with pytest.raises(ConnectionError):
        services.bulk_transition_run(job_id=job.pk, chunk_size=10)
    job.refresh_from_db()
    assert (job.status, job.processed, job.succeeded) == ("running", 20, 20)
    monkeypatch.setattr(lifecycle, "apply_chunk", real)
    done = services.bulk_transition_run(job_id=job.pk, chunk_size=10)
    assert (done.status, done.total, done.processed, done.succeeded, done.failed) == (
        "succeeded",
        25,
        25,
        25,
        0,
    )
    assert items(done) == {str(d.pk): (True, "") for d in devices}
    assert JobItem.objects.filter(job=done).count() == 25
    assert device_audit().filter(action="device.transition").count() == 25
    again = services.bulk_transition_run(job_id=job.pk)  # a finished job is left alone
    assert (again.status, JobItem.objects.filter(job=done).count()) == ("succeeded", 25)


def test_it_only_moves_what_the_actor_may_transition(tree):
    version = make_version(tree["acme"])
    home = fleet(tree["retail"], version, 3)
    elsewhere = fleet(tree["hospital"], version, 2, prefix="HO")
    operator = actor(make_member(tree["retail"], "operator"))
    job = start(tree["acme"], {}, transition="suspend", who=operator)
    assert job.created_by_id == operator.user_id
    done = services.bulk_transition_run(job_id=job.pk)
    assert (done.total, done.succeeded) == (3, 3)
    assert set(items(done)) == {str(d.pk) for d in home}
    assert set(Device.objects.filter(serial__startswith="HO").values_list("state", flat=True)) == {
        "active"
    }
    assert len(elsewhere) == 2


def test_decommissioning_in_bulk_revokes_credentials_and_honours_guards(tree, monkeypatch):
    from apps.devices.models import Transfer

    monkeypatch.setattr(core_events, "_registry", {})
    core_events.consumer("pki", events=["device.credentials_revoked"])(lambda event: None)
    version = make_version(tree["acme"])
    devices = fleet(tree["acme"], version, 3, state="escrow")
    Device.objects.update(claim_code_hash="h" * 64)
    Transfer.objects.create(
        device=devices[0], from_organization=tree["acme"], to_organization=tree["retail"]
    )
    done = services.bulk_transition_run(
        job_id=start(tree["acme"], {}, transition="decommission").pk
    )
    assert items(done) == {
        str(devices[0].pk): (False, "The device has a pending transfer; cancel it first."),
        str(devices[1].pk): (True, ""),
        str(devices[2].pk): (True, ""),
    }
    assert dict(Device.objects.values_list("serial", "claim_code_hash")) == {
        devices[0].serial: "h" * 64,
        devices[1].serial: "",
        devices[2].serial: "",
    }
    revoked = Event.objects.filter(type="device.credentials_revoked")
    assert sorted(revoked.values_list("subject_id", flat=True)) == sorted(
        [str(devices[1].pk), str(devices[2].pk)]
    )
    assert EventDelivery.objects.filter(event__in=revoked, consumer="pki").count() == 2


def test_a_bad_selection_is_refused_before_any_job_exists(tree):
    with pytest.raises(ValidationError) as refused:
        start(tree["acme"], {"colour": "red"})
    assert refused.value.message_dict == {"colour": ["Unknown filter."]}
    with pytest.raises(ValidationError) as refused:
        start(tree["acme"], {}, transition="fly")
    assert refused.value.message_dict == {"transition": ["Unknown transition: fly."]}
    assert Job.objects.count() == 0


def test_progress_is_pushed_to_the_organization(tree, django_capture_on_commit_callbacks):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    version = make_version(tree["acme"])
    fleet(tree["acme"], version, 3)
    job = start(tree["acme"], {})
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"org.{tree['acme'].pk}", channel)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            services.bulk_transition_run(job_id=job.pk)
        first = async_to_sync(layer.receive)(channel)
    finally:
        async_to_sync(layer.group_discard)(f"org.{tree['acme'].pk}", channel)
    assert first["data"]["type"] == "job.progress"
    assert {k: first["data"][k] for k in ("id", "processed", "total")} == {
        "id": str(job.pk),
        "processed": 3,
        "total": 3,
    }


def test_the_task_acts_as_the_api_key_that_started_the_job(tree):
    from django.utils import timezone

    from apps.accounts import services as accounts
    from apps.accounts.actors import actor_for_api_key
    from apps.devices.tasks import run_bulk_transition

    version = make_version(tree["acme"])
    devices = fleet(tree["acme"], version, 2)
    key = accounts.api_key_create(
        actor=SYSTEM, organization=tree["acme"], name="ops", role="operator"
    ).api_key
    job = start(tree["acme"], {}, transition="suspend", who=actor_for_api_key(key))
    assert (job.created_by_id, job.params["actor"]["api_key_id"]) == (None, str(key.pk))
    result = run_bulk_transition.apply(kwargs={"job_id": str(job.pk)}).get()
    assert result == {"status": "succeeded", "processed": 2}
    rows = device_audit().filter(action="device.transition")
    assert sorted(rows.values_list("object_id", "actor_api_key_id", "actor_label")) == sorted(
        (str(d.pk), key.pk, f"API key ops ({key.prefix})") for d in devices
    )
    second = start(tree["acme"], {}, transition="resume", who=actor_for_api_key(key))
    key.revoked_at = timezone.now()
    key.save()
    failed = services.bulk_transition_run(job_id=second.pk)
    assert (failed.status, failed.error, failed.processed) == (
        "failed",
        "The user or API key that started this job can no longer act.",
        0,
    )
    assert set(Device.objects.values_list("state", flat=True)) == {"suspended"}
