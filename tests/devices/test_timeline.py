"""The device timeline: audit rows and events merged, newest first, keyset by time."""

from __future__ import annotations

import pytest

from apps.core import events
from apps.devices import selectors, services
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
    rest = selectors.device_timeline(actor=person, device=device, before=first[-1].time, limit=10)
    assert first + rest == timeline
