"""The lifecycle as a table: every (state, transition) pair and its exact outcome."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.core.actors import SYSTEM
from apps.devices import lifecycle, services
from apps.devices.models import Device, Transfer

from .registry_support import device_audit, device_events, make_device, make_version

pytestmark = pytest.mark.django_db

STATES = (
    "escrow",
    "discovered",
    "active",
    "maintenance",
    "suspended",
    "decommissioned",
    "replaced",
)
# transition -> {state it is legal from: resulting state}; anything else is refused.
TABLE = {
    "activate": {
        "escrow": "active",
        "discovered": "active",
        "maintenance": "active",
        "suspended": "active",
    },
    "approve": {"discovered": "active"},
    "reject": {"discovered": "decommissioned"},
    "enter_maintenance": {"active": "maintenance"},
    "exit_maintenance": {"maintenance": "active"},
    "suspend": {"active": "suspended", "maintenance": "suspended"},
    "resume": {"suspended": "active"},
    "decommission": {
        "escrow": "decommissioned",
        "discovered": "decommissioned",
        "active": "decommissioned",
        "maintenance": "decommissioned",
        "suspended": "decommissioned",
    },
}
PAIRS = [(state, name) for name in TABLE for state in STATES]


def test_the_table_names_exactly_these_transitions():
    assert sorted(lifecycle.TRANSITIONS) == sorted(TABLE)
    assert {t.permission for t in lifecycle.TRANSITIONS.values()} == {
        "device.transition",
        "device.delete",
    }
    assert lifecycle.TRANSITIONS["decommission"].permission == "device.delete"


@pytest.mark.parametrize(("state", "name"), PAIRS)
def test_transition_table(tree, state, name):
    version = make_version(tree["acme"])
    device = make_device(tree["acme"], version, "SN-1", state=state, claim_code_hash="x" * 64)
    expected = TABLE[name].get(state)
    if expected is None:
        with pytest.raises(ValidationError) as refused:
            services.device_transition(actor=SYSTEM, device=device, transition=name)
        assert refused.value.message_dict == {"state": [f"Cannot {name} a device that is {state}."]}
        device.refresh_from_db()
        assert (device.state, device_audit().count(), device_events().count()) == (state, 0, 0)
        return
    moved = services.device_transition(actor=SYSTEM, device=device, transition=name, reason="r")
    device.refresh_from_db()
    assert (moved.state, device.state) == (expected, expected)
    row = device_audit().get()
    assert (row.action, row.object_id, row.changes) == (
        "device.transition",
        str(device.pk),
        {"state": [state, expected], "transition": name, "reason": "r"},
    )
    revoked = expected == "decommissioned"
    assert device.claim_code_hash == ("" if revoked else "x" * 64)
    events = list(device_events().values_list("type", "payload"))
    changed = (
        "device.state_changed",
        {
            "id": str(device.pk),
            "serial": "SN-1",
            "transition": name,
            "reason": "r",
            "from": state,
            "to": expected,
        },
    )
    revocation = (
        "device.credentials_revoked",
        {"id": str(device.pk), "serial": "SN-1", "transition": name, "reason": "r"},
    )
    assert events == ([changed, revocation] if revoked else [changed])


def test_an_unknown_transition_is_refused(tree):
    device = make_device(tree["acme"], make_version(tree["acme"]), "SN-1")
    with pytest.raises(ValidationError) as refused:
        services.device_transition(actor=SYSTEM, device=device, transition="explode")
    assert refused.value.message_dict == {"transition": ["Unknown transition: explode."]}


@pytest.mark.parametrize("name", ["activate", "decommission"])
def test_a_pending_transfer_blocks_activation_and_decommissioning(tree, name):
    device = make_device(tree["acme"], make_version(tree["acme"]), "SN-1")
    Transfer.objects.create(
        device=device, from_organization=tree["acme"], to_organization=tree["retail"]
    )
    with pytest.raises(ValidationError) as refused:
        services.device_transition(actor=SYSTEM, device=device, transition=name)
    assert refused.value.message_dict == {
        "state": ["The device has a pending transfer; cancel it first."]
    }
    assert Device.objects.get().state == "escrow"
    assert device_audit().count() == 0


def test_a_transition_pushes_the_new_state_after_commit(tree, django_capture_on_commit_callbacks):
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    device = make_device(tree["acme"], make_version(tree["acme"]), "SN-1", state="active")
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"org.{tree['acme'].pk}", channel)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            services.device_transition(actor=SYSTEM, device=device, transition="suspend")
        message = async_to_sync(layer.receive)(channel)
    finally:
        async_to_sync(layer.group_discard)(f"org.{tree['acme'].pk}", channel)
    assert message == {
        "type": "live.message",
        "organization": str(tree["acme"].pk),
        "permission": "device.view",
        "data": {"type": "device.state", "id": str(device.pk), "state": "suspended"},
    }
