"""Ownership transfer of escrow devices: a manufacturer offers a device to an organization below
it, which accepts or rejects it (or the sender cancels); or the receiver claims it at once with
the single-use claim code printed on the product. The history stays with the device: every step
is audited on both sides and emitted as an event on the device.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts import tokens
from apps.accounts.models import Organization
from apps.core import audit, events
from apps.core.actors import Actor

from .choices import DeviceState, TransferStatus
from .models import Device, Transfer
from .services import broadcast, device_payload


def _locked(device: Device) -> Device:
    return Device.objects.select_for_update(of=("self",)).get(pk=device.pk)


def _check_receiver(device: Device, to_organization: Organization, field: str) -> None:
    manufacturer = Organization.objects.get(pk=device.manufacturer_id)
    if not to_organization.is_descendant_of(manufacturer) or not to_organization.is_active:
        raise ValidationError({field: "Must be an organization below the device's manufacturer."})
    if to_organization.pk == device.organization_id:
        raise ValidationError({field: "The device already belongs to this organization."})


TRANSFER_EVENTS = {
    "transfer.create": "device.transfer_created",
    "transfer.accept": "device.transfer_accepted",
    "transfer.reject": "device.transfer_rejected",
    "transfer.cancel": "device.transfer_cancelled",
    "transfer.claim": "device.claimed",
}


def _record_transfer(actor: Actor, transfer: Transfer, action: str, **changes: Any) -> None:
    """Both sides see it: an audit row on the device in the acting side's organization, one on
    the transfer in the other's, and one event carrying both organization ids."""
    sides = {
        "from_organization": str(transfer.from_organization_id),
        "to_organization": str(transfer.to_organization_id),
    }
    receiving = action in ("transfer.accept", "transfer.reject", "transfer.claim")
    acting, other = (
        (transfer.to_organization_id, transfer.from_organization_id)
        if receiving
        else (transfer.from_organization_id, transfer.to_organization_id)
    )
    full = {"transfer": str(transfer.pk), **sides, "status": transfer.status, **changes}
    audit.record(
        actor=actor,
        action=f"device.{action}",
        obj=transfer.device,
        organization_id=acting,
        changes=full,
    )
    audit.record(
        actor=actor, action=f"device.{action}", obj=transfer, organization_id=other, changes=full
    )
    events.emit(
        TRANSFER_EVENTS[action],
        organization_id=transfer.from_organization_id,
        payload=device_payload(transfer.device, transfer=str(transfer.pk), **sides),
        subject=transfer.device,
    )


@transaction.atomic
def transfer_create(
    *, actor: Actor, device: Device, to_organization: Organization, note: str = ""
) -> Transfer:
    """Offer an escrow device to an organization below its manufacturer (one pending at once)."""
    device = _locked(device)
    if device.state != DeviceState.ESCROW:
        raise ValidationError(
            {"state": f"Only a device in escrow can be transferred; this one is {device.state}."}
        )
    _check_receiver(device, to_organization, "to_organization")
    if Transfer.objects.filter(device=device, status=TransferStatus.PENDING).exists():
        raise ValidationError({"device": "This device already has a pending transfer."})
    transfer = Transfer.objects.create(
        device=device,
        from_organization_id=device.organization_id,
        to_organization=to_organization,
        note=note,
        created_by_id=actor.user_id,
    )
    _record_transfer(actor, transfer, "transfer.create", note=note)
    return transfer


def _decide(actor: Actor, transfer: Transfer, status: str) -> Transfer:
    transfer = (
        Transfer.objects.select_for_update(of=("self",))
        .select_related("device")
        .get(pk=transfer.pk)
    )
    if transfer.status != TransferStatus.PENDING:
        raise ValidationError({"status": f"This transfer is already {transfer.status}."})
    transfer.status = status
    transfer.decided_by_id = actor.user_id
    transfer.decided_at = timezone.now()
    transfer.save(update_fields=["status", "decided_by", "decided_at", "updated_at"])
    return transfer


@transaction.atomic
def transfer_accept(*, actor: Actor, transfer: Transfer) -> Transfer:
    """The receiver takes the device: it moves to the receiving organization (still escrow)."""
    transfer = _decide(actor, transfer, TransferStatus.ACCEPTED)
    device = _locked(transfer.device)
    if (
        device.state != DeviceState.ESCROW
        or device.organization_id != transfer.from_organization_id
    ):
        raise ValidationError({"state": "The device is no longer in escrow with the sender."})
    _move_device(device, transfer.to_organization_id)
    transfer.device = device
    _record_transfer(actor, transfer, "transfer.accept")
    return transfer


def _move_device(device: Device, organization_id: Any) -> None:
    device.organization_id = organization_id
    device.site = None  # a site of the sender means nothing to the receiver
    device.save(update_fields=["organization", "site", "updated_at"])
    message = {"type": "device.state", "id": str(device.pk), "state": device.state}
    transaction.on_commit(lambda: broadcast(organization_id, message))


@transaction.atomic
def transfer_reject(*, actor: Actor, transfer: Transfer) -> Transfer:
    transfer = _decide(actor, transfer, TransferStatus.REJECTED)
    _record_transfer(actor, transfer, "transfer.reject")
    return transfer


@transaction.atomic
def transfer_cancel(*, actor: Actor, transfer: Transfer) -> Transfer:
    transfer = _decide(actor, transfer, TransferStatus.CANCELLED)
    _record_transfer(actor, transfer, "transfer.cancel")
    return transfer


# --- claim codes -------------------------------------------------------------------------------

CLAIM_REFUSED = "Unknown serial number or wrong claim code."


@transaction.atomic
def device_set_claim_code(*, actor: Actor, device: Device) -> str:
    """A new claim code for an escrow device (shown once; only its hash is stored)."""
    device = _locked(device)
    if device.state != DeviceState.ESCROW:
        raise ValidationError({"state": "Only a device in escrow can have a claim code."})
    code = f"fo_claim_{secrets.token_urlsafe(18)}"
    device.claim_code_hash = tokens.hash_token(code)
    device.save(update_fields=["claim_code_hash", "updated_at"])
    audit.record(actor=actor, action="device.claim_code", obj=device, changes={"claim_code": "set"})
    return code


@transaction.atomic
def device_claim(
    *,
    actor: Actor,
    organization: Organization,
    serial: str,
    manufacturer_id: Any,
    claim_code: str,
) -> Device:
    """Take an escrow device with the code printed on it: it moves to ``organization`` at once,
    recorded as an accepted transfer. The code is single-use."""
    device = (
        Device.objects.select_for_update(of=("self",))
        .filter(manufacturer_id=manufacturer_id, serial=serial.strip())
        .first()
    )
    stored = device.claim_code_hash if device is not None else ""
    # compare even when nothing matched, so timing does not tell a serial exists
    matches = hmac.compare_digest(tokens.hash_token(claim_code), stored or "0" * 64)
    if device is None or not stored or not matches or device.state != DeviceState.ESCROW:
        raise ValidationError({"claim_code": CLAIM_REFUSED})
    _check_receiver(device, organization, "organization")
    Transfer.objects.filter(device=device, status=TransferStatus.PENDING).update(
        status=TransferStatus.CANCELLED, decided_at=timezone.now()
    )
    transfer = Transfer.objects.create(
        device=device,
        from_organization_id=device.organization_id,
        to_organization=organization,
        status=TransferStatus.ACCEPTED,
        note="Claimed with a claim code.",
        created_by_id=actor.user_id,
        decided_by_id=actor.user_id,
        decided_at=timezone.now(),
    )
    device.claim_code_hash = ""
    device.save(update_fields=["claim_code_hash", "updated_at"])
    _move_device(device, organization.pk)
    _record_transfer(actor, transfer, "transfer.claim")
    return device
