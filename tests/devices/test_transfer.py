"""Ownership transfer end to end: offer, accept, reject, cancel, claim codes, the tree rule."""

from __future__ import annotations

import hashlib

import pytest
from django.core.exceptions import ValidationError

from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, Event
from apps.devices import selectors, transfers
from apps.devices.models import Device, Transfer
from tests.factories import actor, make_member

from .registry_support import make_device, make_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def device(tree):
    return make_device(tree["acme"], make_version(tree["acme"]), "SN-1")


def sides(tree):
    return {"from_organization": str(tree["acme"].pk), "to_organization": str(tree["retail"].pk)}


def test_offer_and_accept_moves_the_device_and_both_sides_see_it(tree, device):
    sender = actor(make_member(tree["acme"], "admin"))
    receiver = actor(make_member(tree["retail"], "owner"))
    transfer = transfers.transfer_create(
        actor=sender, device=device, to_organization=tree["retail"], note="PO 42"
    )
    assert (transfer.status, transfer.from_organization_id, transfer.created_by_id) == (
        "pending",
        tree["acme"].pk,
        sender.user_id,
    )
    assert list(selectors.transfer_list(actor=receiver, direction="incoming")) == [transfer]
    assert list(selectors.transfer_list(actor=receiver, direction="outgoing")) == []
    assert list(selectors.transfer_list(actor=sender)) == [transfer]
    accepted = transfers.transfer_accept(actor=receiver, transfer=transfer)
    device.refresh_from_db()
    assert (accepted.status, accepted.decided_by_id, device.organization_id, device.state) == (
        "accepted",
        receiver.user_id,
        tree["retail"].pk,
        "escrow",
    )
    rows = list(
        AuditLog.objects.filter(action__startswith="device.transfer")
        .order_by("created_at", "id")
        .values_list("action", "object_type", "organization_id")
    )
    assert rows == [
        ("device.transfer.create", "devices.device", tree["acme"].pk),
        ("device.transfer.create", "devices.transfer", tree["retail"].pk),
        ("device.transfer.accept", "devices.device", tree["retail"].pk),
        ("device.transfer.accept", "devices.transfer", tree["acme"].pk),
    ]
    accept_row = AuditLog.objects.filter(action="device.transfer.accept").first()
    assert accept_row.changes == {"transfer": str(transfer.pk), **sides(tree), "status": "accepted"}
    events = Event.objects.filter(subject_id=str(device.pk)).order_by("created_at")
    assert [(e.type, e.payload) for e in events] == [
        (
            kind,
            {"id": str(device.pk), "serial": "SN-1", "transfer": str(transfer.pk), **sides(tree)},
        )
        for kind in ("device.transfer_created", "device.transfer_accepted")
    ]
    # the receiver now sees the device and its history, before the transfer included
    timeline = selectors.device_timeline(actor=receiver, device=device)
    assert [entry.action for entry in timeline] == [
        "device.transfer.accept",
        "device.transfer.create",
    ]


def test_reject_and_cancel_leave_the_device_with_the_sender(tree, device):
    first = transfers.transfer_create(actor=SYSTEM, device=device, to_organization=tree["retail"])
    transfers.transfer_reject(actor=SYSTEM, transfer=first)
    second = transfers.transfer_create(
        actor=SYSTEM, device=device, to_organization=tree["hospital"]
    )
    transfers.transfer_cancel(actor=SYSTEM, transfer=second)
    device.refresh_from_db()
    assert device.organization_id == tree["acme"].pk
    assert list(Transfer.objects.order_by("created_at").values_list("status", flat=True)) == [
        "rejected",
        "cancelled",
    ]
    with pytest.raises(ValidationError) as error:
        transfers.transfer_accept(actor=SYSTEM, transfer=second)
    assert error.value.message_dict == {"status": ["This transfer is already cancelled."]}


def test_transfers_outside_the_manufacturers_tree_are_refused(tree, device):
    for target in (tree["globex"], tree["platform"], tree["acme"]):
        with pytest.raises(ValidationError) as error:
            transfers.transfer_create(actor=SYSTEM, device=device, to_organization=target)
        assert error.value.message_dict == {
            "to_organization": ["Must be an organization below the device's manufacturer."]
        }
    assert Transfer.objects.count() == 0


def test_only_escrow_devices_and_one_pending_transfer(tree, device):
    transfers.transfer_create(actor=SYSTEM, device=device, to_organization=tree["retail"])
    with pytest.raises(ValidationError) as error:
        transfers.transfer_create(actor=SYSTEM, device=device, to_organization=tree["hospital"])
    assert error.value.message_dict == {"device": ["This device already has a pending transfer."]}
    active = make_device(tree["acme"], device.profile_version, "SN-2", state="active")
    with pytest.raises(ValidationError) as error:
        transfers.transfer_create(actor=SYSTEM, device=active, to_organization=tree["retail"])
    assert error.value.message_dict == {
        "state": ["Only a device in escrow can be transferred; this one is active."]
    }


def test_a_claim_code_moves_the_device_once(tree, device):
    code = transfers.device_set_claim_code(actor=SYSTEM, device=device)
    device.refresh_from_db()
    assert code.startswith("fo_claim_")
    assert device.claim_code_hash == hashlib.sha256(code.encode()).hexdigest()
    claimer = actor(make_member(tree["hospital"], "admin"))
    claimed = transfers.device_claim(
        actor=claimer,
        organization=tree["hospital"],
        serial="SN-1",
        manufacturer_id=tree["acme"].pk,
        claim_code=code,
    )
    claimed.refresh_from_db()
    assert (claimed.organization_id, claimed.claim_code_hash, claimed.state) == (
        tree["hospital"].pk,
        "",
        "escrow",
    )
    transfer = Transfer.objects.get()
    assert (transfer.status, transfer.to_organization_id, transfer.decided_by_id) == (
        "accepted",
        tree["hospital"].pk,
        claimer.user_id,
    )
    with pytest.raises(ValidationError) as error:  # single use
        transfers.device_claim(
            actor=claimer,
            organization=tree["retail"],
            serial="SN-1",
            manufacturer_id=tree["acme"].pk,
            claim_code=code,
        )
    assert error.value.message_dict == {
        "claim_code": ["Unknown serial number or wrong claim code."]
    }


@pytest.mark.parametrize(("serial", "code"), [("SN-1", "fo_claim_wrong"), ("SN-404", None)])
def test_a_wrong_code_or_serial_tells_nothing(tree, device, serial, code):
    real = transfers.device_set_claim_code(actor=SYSTEM, device=device)
    with pytest.raises(ValidationError) as error:
        transfers.device_claim(
            actor=SYSTEM,
            organization=tree["retail"],
            serial=serial,
            manufacturer_id=tree["acme"].pk,
            claim_code=code or real,
        )
    assert error.value.message_dict == {
        "claim_code": ["Unknown serial number or wrong claim code."]
    }
    assert Device.objects.get().organization_id == tree["acme"].pk


def test_a_claim_outside_the_tree_is_refused(tree, device):
    code = transfers.device_set_claim_code(actor=SYSTEM, device=device)
    with pytest.raises(ValidationError) as error:
        transfers.device_claim(
            actor=SYSTEM,
            organization=tree["globex"],
            serial="SN-1",
            manufacturer_id=tree["acme"].pk,
            claim_code=code,
        )
    assert error.value.message_dict == {
        "organization": ["Must be an organization below the device's manufacturer."]
    }
    assert Transfer.objects.count() == 0
