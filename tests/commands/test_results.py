"""Device reports: forward-only and idempotent, refused for unknown or foreign commands, late
reports kept aside; retries with backoff, expiry, timeout, cancel, and the request's completion."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.changes.choices import ChangeStatus
from apps.changes.execution import change_request_cancel
from apps.commands import sweeper
from apps.commands.services import Refusal, Report, commands_mark_sent, results_record
from apps.commands.uplink import handle_results
from apps.core.actors import SYSTEM
from apps.core.models import Event
from apps.devices.models import Downlink
from apps.devices.uplinks import Uplink

from .support import commands_of, run

pytestmark = pytest.mark.django_db


def report(command, status: str, at=None, **document) -> Report:
    return Report(
        device_id=command.device_id,
        command_id=str(command.pk),
        document={"status": status, **document},
        at=at or timezone.now(),
    )


def record(*reports: Report) -> list[Refusal]:
    return results_record(reports=list(reports), actor=SYSTEM)


def test_reports_move_a_command_forward_only_and_redelivery_changes_nothing(tree, devices):
    request = run(tree["acme"], devices[:1])
    command = commands_of(request)[devices[0].pk]
    at = timezone.now()
    assert record(report(command, "received", at)) == []
    command.refresh_from_db()
    assert (command.status, command.received_at) == ("received", at)
    assert command.timeout_at == at + timedelta(seconds=300)
    assert command.next_attempt_at is None
    done = report(command, "succeeded", at + timedelta(seconds=2), output={"pong": True})
    assert record(done, report(command, "in_progress")) == []
    command.refresh_from_db()
    assert (command.status, command.output, command.finished_at) == (
        "succeeded",
        {"pong": True},
        at + timedelta(seconds=2),
    )
    updated = command.updated_at
    assert record(done, report(command, "received"), report(command, "in_progress")) == []
    command.refresh_from_db()
    assert (command.status, command.updated_at, command.late_result) == ("succeeded", updated, None)
    assert Event.objects.filter(type="command.completed").count() == 1


def test_a_report_on_an_unknown_or_foreign_command_is_refused(tree, devices):
    request = run(tree["acme"], devices[:2])
    commands = commands_of(request)
    mine, theirs = commands[devices[0].pk], commands[devices[1].pk]
    foreign = Report(
        device_id=devices[0].pk,
        command_id=str(theirs.pk),
        document={"status": "succeeded"},
        at=timezone.now(),
    )
    unknown = Report(
        device_id=devices[0].pk,
        command_id="not-a-uuid",
        document={"status": "received"},
        at=timezone.now(),
    )
    bad = report(mine, "exploded")
    refused = record(foreign, unknown, bad, report(mine, "received"))
    assert refused == [
        Refusal(0, "unknown_command", f"No command {theirs.pk} here."),
        Refusal(1, "unknown_command", "Not a command id."),
        Refusal(
            2,
            "invalid_result",
            "status must be one of received, in_progress, succeeded, failed, not 'exploded'.",
        ),
    ]
    theirs.refresh_from_db()
    mine.refresh_from_db()
    assert (theirs.status, mine.status) == ("queued", "received")


def test_the_uplink_handler_returns_the_refused_messages(tree, devices):
    request = run(tree["acme"], devices[:1])
    command = commands_of(request)[devices[0].pk]

    def uplink(command_id: str, status: str) -> Uplink:
        return Uplink(
            device_id=devices[0].pk,
            organization_id=devices[0].organization_id,
            device_state="active",
            subtopic=f"commands/{command_id}/result",
            document={"status": status},
            received_at=timezone.now(),
            source="mqtt",
        )

    good, stray = uplink(str(command.pk), "failed"), uplink(str(devices[0].pk), "failed")
    assert handle_results([good, stray]) == [
        (stray, "unknown_command", f"No command {devices[0].pk} here.")
    ]
    command.refresh_from_db()
    assert command.status == "failed"


def test_the_agent_dropping_an_expired_command_marks_it_expired(tree, devices):
    request = run(tree["acme"], devices[:1])
    command = commands_of(request)[devices[0].pk]
    record(report(command, "failed", error="expired"))
    command.refresh_from_db()
    assert (command.status, command.error) == ("expired", "expired")


def test_the_last_final_command_completes_the_request(
    tree, devices, django_capture_on_commit_callbacks
):
    request = run(tree["acme"], devices[:2])
    first, second = commands_of(request).values()
    with django_capture_on_commit_callbacks(execute=True):
        record(report(first, "succeeded"))
    request.refresh_from_db()
    assert request.status == ChangeStatus.EXECUTING
    with django_capture_on_commit_callbacks(execute=True):
        record(report(second, "failed", error="disk full"))
    request.refresh_from_db()
    assert request.status == ChangeStatus.COMPLETED
    done = Event.objects.get(type="commands.request_completed")
    assert done.payload["counts"]["succeeded"] == 1
    assert done.payload["counts"]["failed"] == 1
    assert done.payload["counts"]["total"] == 2
    assert Event.objects.filter(type="changerequest.completed").count() == 1
    failed = Event.objects.get(type="command.failed")
    assert failed.payload == {"command": str(second.pk), "status": "failed", "error": "disk full"}


def test_published_messages_mark_their_commands_sent(tree, devices):
    request = run(tree["acme"], devices[:2])
    first, second = commands_of(request).values()
    record(report(second, "received"))
    commands_mark_sent([str(first.pk), str(second.pk), "junk"])
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("sent", "received")
    assert first.sent_at is not None


def test_unanswered_commands_are_resent_with_backoff_until_they_expire(tree, devices):
    request = run(tree["acme"], devices[:1], expires_in=timedelta(minutes=10))
    command = commands_of(request)[devices[0].pk]
    issued = command.issued_at
    assert command.next_attempt_at == issued + timedelta(seconds=30)
    assert sweeper.sweep(now=issued + timedelta(seconds=29)) == sweeper.Swept(0, 0, 0)
    now = issued + timedelta(seconds=31)
    assert sweeper.sweep(now=now) == sweeper.Swept(retried=1, expired=0, timed_out=0)
    command.refresh_from_db()
    assert (command.attempts, command.next_attempt_at) == (2, now + timedelta(seconds=60))
    rows = list(Downlink.objects.filter(ref_id=str(command.pk)).order_by("id"))
    assert [row.state for row in rows] == ["superseded", "pending"]
    assert bytes(rows[0].payload) == bytes(rows[1].payload)  # the same command id again
    later = now + timedelta(seconds=61)
    assert sweeper.sweep(now=later).retried == 1
    command.refresh_from_db()
    assert (command.attempts, command.next_attempt_at) == (3, later + timedelta(seconds=120))
    assert sweeper.sweep(now=request.expires_at) == sweeper.Swept(0, 1, 0)
    command.refresh_from_db()
    assert (command.status, command.error) == ("expired", "Never received before it expired.")
    assert Event.objects.get(type="command.failed").payload["status"] == "expired"


def test_a_received_command_without_result_times_out_and_is_not_resent(tree, devices):
    request = run(tree["acme"], devices[:1], timeout_s=60)
    command = commands_of(request)[devices[0].pk]
    at = timezone.now()
    record(report(command, "in_progress", at))
    assert sweeper.sweep(now=at + timedelta(seconds=59)) == sweeper.Swept(0, 0, 0)
    assert sweeper.sweep(now=at + timedelta(seconds=60)) == sweeper.Swept(0, 0, 1)
    command.refresh_from_db()
    assert (command.status, command.attempts) == ("timed_out", 1)
    record(report(command, "succeeded", output={"late": 1}))
    command.refresh_from_db()
    assert command.status == "timed_out"
    assert command.late_result["status"] == "succeeded"
    assert command.late_result["output"] == {"late": 1}


def test_cancel_stops_retries_and_drops_unsent_messages(tree, devices):
    request = run(tree["acme"], devices[:2])
    first, second = commands_of(request).values()
    record(report(first, "succeeded"))
    change_request_cancel(actor=SYSTEM, request=request)
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("succeeded", "cancelled")
    assert second.error == "Cancelled by system."
    assert Downlink.objects.get(ref_id=str(second.pk)).state == "superseded"
    assert sweeper.sweep(now=timezone.now() + timedelta(hours=2)) == sweeper.Swept(0, 0, 0)
    record(report(second, "failed", error="too late"))
    second.refresh_from_db()
    assert second.status == "cancelled"
    assert second.late_result["error"] == "too late"
