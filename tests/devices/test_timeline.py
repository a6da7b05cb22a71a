"""The device timeline: audit rows and events merged, newest first, keyset by (time, id)."""

from __future__ import annotations

import datetime
import uuid

import pytest
from rest_framework.test import APIClient

from apps.core import events
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, Event
from apps.devices import selectors, services
from apps.devices.models import Device
from tests.factories import actor, make_member

from .registry_support import make_version, register

pytestmark = pytest.mark.django_db


def test_it_merges_audit_rows_and_events_in_order_with_pages(tree):
    device = register(tree["retail"], make_version(tree["acme"]), "SN-1", name="Lobby")
    person = actor(make_member(tree["retail"], "owner"))
    services.device_transition(actor=person, device=device, transition="activate")
    services.device_update(actor=person, device=device, name="Hall")
    events.emit(
        "telemetry.threshold",
        organization_id=tree["retail"].pk,
        payload={"metric": "temp"},
        subject=device,
    )
    services.device_transition(actor=person, device=device, transition="decommission", reason="EOL")
    timeline = selectors.device_timeline(actor=person, device=device)
    assert [(e.kind, e.action, e.actor_label, e.summary) for e in timeline] == [
        ("event", "device.credentials_revoked", "", "Credentials revoked"),
        ("audit", "device.transition", person.label, "decommission: active → decommissioned"),
        ("event", "telemetry.threshold", "", "telemetry.threshold"),
        ("audit", "device.update", person.label, "Changed name"),
        ("audit", "device.transition", person.label, "activate: escrow → active"),
        ("audit", "device.register", "system", "Registered (escrow)"),
    ]
    assert timeline[1].changes == {
        "state": ["active", "decommissioned"],
        "transition": "decommission",
        "reason": "EOL",
    }
    assert {e.device_id for e in timeline} == {str(device.pk)}
    times = [e.time for e in timeline]
    assert times == sorted(times, reverse=True)
    first = selectors.device_timeline(actor=person, device=device, limit=2)
    rest = selectors.device_timeline(
        actor=person, device=device, before=first[-1].time, before_id=first[-1].id, limit=10
    )
    assert first + rest == timeline


SAME = datetime.datetime(2100, 1, 1, tzinfo=datetime.UTC)  # after the registration


def tied_device(tree, monkeypatch) -> tuple[Device, list[uuid.UUID]]:
    """A device with 3 audit rows and 3 shown events all at ``SAME``, and their ids, newest
    first (by id), followed by its registration (earlier)."""
    device = register(tree["retail"], make_version(tree["acme"]), "SN-1")
    # the audit log is append-only: stamp the rows as they are written, not afterwards
    for model in (AuditLog, Event):
        monkeypatch.setattr(model._meta.get_field("created_at"), "_get_default", lambda: SAME)
    for number in range(3):
        services.device_update(actor=SYSTEM, device=device, tags=[f"t{number}"])
        events.emit(
            "telemetry.threshold", organization_id=tree["retail"].pk, payload={}, subject=device
        )
    monkeypatch.undo()
    audits = AuditLog.objects.filter(object_id=str(device.pk), created_at=SAME)
    shown = Event.objects.filter(subject_id=str(device.pk), type="telemetry.threshold")
    tied = sorted([*audits.values_list("id", flat=True), *shown.values_list("id", flat=True)])
    assert len(tied) == 6
    registered = AuditLog.objects.get(object_id=str(device.pk), action="device.register")
    return device, [*reversed(tied), registered.pk]


def test_entries_with_the_same_time_are_paged_one_by_one_by_id(tree, monkeypatch):
    device, expected = tied_device(tree, monkeypatch)

    pages: list[list[selectors.TimelineEntry]] = []
    page = selectors.device_timeline(actor=SYSTEM, device=device, limit=1)
    while page:
        pages.append(page)
        page = selectors.device_timeline(
            actor=SYSTEM, device=device, before=page[-1].time, before_id=page[-1].id, limit=1
        )

    assert [len(p) for p in pages] == [1] * 7
    assert [p[0].id for p in pages] == expected
    assert [p[0].time for p in pages[:6]] == [SAME] * 6
    assert [p[0].kind for p in pages[:6]] == ["event", "audit"] * 3  # uuid7s: written order
    assert pages[6][0].action == "device.register"
    assert selectors.device_timeline(actor=SYSTEM, device=device, limit=7) == [p[0] for p in pages]
    # a time-only cursor skips the rest of the tie: the reason for the id
    older = selectors.device_timeline(actor=SYSTEM, device=device, before=SAME, limit=1)
    assert [entry.action for entry in older] == ["device.register"]


def test_the_api_pages_through_a_tie_with_next_before_id(tree, monkeypatch):
    device, expected = tied_device(tree, monkeypatch)
    client = APIClient()
    client.force_login(make_member(tree["retail"], "viewer"))
    url = f"/api/v1/devices/{device.pk}/timeline/"
    seen: list[tuple[str, str]] = []
    cursors: list[str] = []
    query: dict[str, str] = {"limit": "1"}
    for _ in range(10):
        body = client.get(url, query).json()
        seen += [(entry["time"], entry["action"]) for entry in body["results"]]
        if body["next_before"] is None:
            break
        cursors.append(body["next_before_id"])
        query = {"limit": "1", "before": body["next_before"], "before_id": body["next_before_id"]}
    tie = "2100-01-01T00:00:00Z"
    assert seen[:6] == [(tie, "telemetry.threshold"), (tie, "device.update")] * 3
    assert [action for _, action in seen[6:]] == ["device.register"]
    assert cursors == [str(entry_id) for entry_id in expected]
    assert body == {"results": [], "next_before": None, "next_before_id": None}


@pytest.mark.parametrize(
    ("action", "changes", "line"),
    [
        (
            "device.enroll",
            {"method": "claim_token", "outcome": "created", "state": "active"},
            "Enrolled by claim token (created, active)",
        ),
        ("device.enroll_refused", {"reason": "token_expired"}, "Enrollment refused: token_expired"),
        ("device.certificate_renew", {}, "Certificate renewed"),
        ("device.certificate_revoke", {"reason": "key_compromise"}, "Certificate revoked"),
        ("device.token_create", {}, "Device token created"),
        ("device.something_new", {}, "device.something_new"),
    ],
)
def test_credential_and_enrollment_entries_read_as_one_line(action, changes, line):
    from apps.devices.selectors import summarize

    assert summarize(action, changes) == line
