"""Writes of the fleet registry: register, update, lifecycle transitions (one device or a
selection, as a job), ownership transfer, claim codes and replacement.

Each service runs in one transaction, writes its audit record and domain event there and leaves
side effects (websocket pushes, Celery tasks) to ``transaction.on_commit``. Front doors check
that the actor may act on the device or organization (``access.py``); services enforce the
business rules and raise ``ValidationError`` naming the field.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts import tokens
from apps.accounts.models import Organization, User
from apps.core import audit, events
from apps.core.actors import Actor
from apps.core.models import Job, JobStatus
from apps.profiles.models import ProfileVersion
from apps.profiles.services import attributes_errors

from . import jobs, lifecycle
from .choices import DeviceState, TransferStatus
from .models import Device, DeviceGroup, GroupMembership, Transfer

logger = logging.getLogger(__name__)

DEVICE_FIELDS = (
    "organization",
    "manufacturer",
    "profile_version",
    "serial",
    "name",
    "state",
    "tags",
    "attributes",
    "latitude",
    "longitude",
    "site",
)
UPDATABLE = ("name", "tags", "attributes", "latitude", "longitude", "site")
BULK_KIND = "devices.bulk_transition"
NO_ACTOR = "The user or API key that started this job can no longer act."


# --- helpers -----------------------------------------------------------------------------------


def attribute_errors(version: ProfileVersion, attributes: Any) -> dict[str, str]:
    """Field-level errors of ``attributes`` against the version's attributes schema, keyed
    ``attributes`` (the whole object) or ``attributes.<path>``."""
    if not isinstance(attributes, dict):
        return {"attributes": "Must be an object."}
    return {
        "attributes" if path == NON_FIELD_ERRORS else f"attributes.{path}": message
        for path, message in attributes_errors(version, attributes).items()
    }


def _check_location(latitude: float | None, longitude: float | None) -> dict[str, str]:
    errors: dict[str, str] = {}
    if (latitude is None) != (longitude is None):
        errors["latitude" if latitude is None else "longitude"] = (
            "Latitude and longitude go together."
        )
    if latitude is not None and not -90 <= latitude <= 90:
        errors["latitude"] = "Must be between -90 and 90."
    if longitude is not None and not -180 <= longitude <= 180:
        errors["longitude"] = "Must be between -180 and 180."
    return errors


def _check_site(site: Organization | None, organization: Organization) -> dict[str, str]:
    if site is not None and not site.path.startswith(organization.path):
        return {"site": "Must be the device's organization or inside it."}
    return {}


def _check_tags(tags: Any) -> dict[str, str]:
    if not isinstance(tags, (list, tuple)) or not all(
        isinstance(tag, str) and 0 < len(tag) <= 64 for tag in tags
    ):
        return {"tags": "Must be a list of tags of 1 to 64 characters."}
    return {}


def broadcast(organization_id: Any, data: dict[str, Any]) -> None:
    """Push ``data`` to the organization's open pages; never fails the caller."""
    try:
        async_to_sync(get_channel_layer().group_send)(  # type: ignore[union-attr]
            f"org.{organization_id}", {"type": "live.message", "data": data}
        )
    except Exception:  # a push is a convenience: pages also reload from the API
        logger.warning("could not push to org.%s", organization_id, exc_info=True)


def _payload(device: Device, **extra: Any) -> dict[str, Any]:
    return {"id": str(device.pk), "serial": device.serial, **extra}


# --- register and update -----------------------------------------------------------------------


def _visible_version(
    actor: Actor, organization: Organization, version: ProfileVersion
) -> ProfileVersion:
    """The version, if the actor sees it and it is shared down to ``organization``."""
    found = (
        ProfileVersion.objects.for_actor(actor, "view")
        .select_related("profile__organization")
        .filter(pk=version.pk)
        .first()
    )
    if found is None or not organization.path.startswith(found.profile.organization.path):
        raise ValidationError({"profile_version": "Unknown profile version."})
    return found


@transaction.atomic
def device_register(
    *,
    actor: Actor,
    organization: Organization,
    profile_version: ProfileVersion,
    serial: str,
    name: str = "",
    tags: Any = (),
    attributes: Any = None,
    latitude: float | None = None,
    longitude: float | None = None,
    site: Organization | None = None,
    state: str = DeviceState.ESCROW,
) -> Device:
    """Register one device of ``profile_version`` in ``organization``; its manufacturer is the
    profile's organization. Nothing is written when any field is invalid."""
    version = _visible_version(actor, organization, profile_version)
    attributes = {} if attributes is None else attributes
    serial = serial.strip()
    errors = {**_check_tags(tags), **_check_location(latitude, longitude)}
    errors |= _check_site(site, organization) | attribute_errors(version, attributes)
    if not serial or len(serial) > 128:
        errors["serial"] = "Must be 1 to 128 characters."
    elif Device.objects.filter(manufacturer=version.profile.organization, serial=serial).exists():
        errors["serial"] = "A device with this serial number already exists for this manufacturer."
    if state not in lifecycle.INITIAL_STATES:
        errors["state"] = f"A device cannot be registered as {state}."
    if errors:
        raise ValidationError(errors)
    device = Device(
        organization=organization,
        manufacturer=version.profile.organization,
        profile_version=version,
        serial=serial,
        name=name.strip(),
        state=state,
        tags=list(tags),
        attributes=attributes,
        latitude=latitude,
        longitude=longitude,
        site=site,
    )
    try:
        with transaction.atomic():
            device.save(force_insert=True)
    except IntegrityError:  # a concurrent registration won the race
        raise ValidationError(
            {"serial": "A device with this serial number already exists for this manufacturer."}
        ) from None
    audit.record(
        actor=actor,
        action="device.register",
        obj=device,
        changes=audit.diff({}, audit.snapshot(device, DEVICE_FIELDS)),
    )
    events.emit(
        "device.registered",
        organization_id=organization.pk,
        payload=_payload(device, state=state, profile_version=str(version.pk)),
        subject=device,
    )
    return device


@transaction.atomic
def device_update(*, actor: Actor, device: Device, **fields: Any) -> Device:
    """Change ``name``, ``tags``, ``attributes``, ``latitude``/``longitude`` or ``site``."""
    unknown = sorted(set(fields) - set(UPDATABLE))
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed here."))
    device = (
        Device.objects.select_for_update(of=("self",))
        .select_related("organization", "profile_version")
        .get(pk=device.pk)
    )
    before = audit.snapshot(device, UPDATABLE)
    latitude = fields.get("latitude", device.latitude)
    longitude = fields.get("longitude", device.longitude)
    errors = _check_location(latitude, longitude)
    if "tags" in fields:
        errors |= _check_tags(fields["tags"])
    if "attributes" in fields:
        errors |= attribute_errors(device.profile_version, fields["attributes"])
    if "site" in fields:
        errors |= _check_site(fields["site"], device.organization)
    if errors:
        raise ValidationError(errors)
    for name, value in fields.items():
        setattr(device, name, list(value) if name == "tags" else value)
    if "name" in fields:
        device.name = str(fields["name"]).strip()
    changes = audit.diff(before, audit.snapshot(device, UPDATABLE))
    if not changes:
        return device
    device.save(update_fields=[*changes, "updated_at"])
    audit.record(actor=actor, action="device.update", obj=device, changes=changes)
    events.emit(
        "device.updated",
        organization_id=device.organization_id,
        payload=_payload(device, fields=sorted(changes)),
        subject=device,
    )
    return device


# --- lifecycle ---------------------------------------------------------------------------------


@transaction.atomic
def device_transition(*, actor: Actor, device: Device, transition: str, reason: str = "") -> Device:
    """Move one device along ``transition`` (guarded, audited, one event, a live push)."""
    spec = lifecycle.get(transition)
    device = Device.objects.select_for_update(of=("self",)).get(pk=device.pk)
    lifecycle.check(spec, device, actor)
    previous = device.state
    device.state = spec.target
    device.state_changed_at = timezone.now()
    for name, value in spec.updates().items():
        setattr(device, name, value)
    device.save(update_fields=["state", "state_changed_at", *spec.updates(), "updated_at"])
    audit.record(
        actor=actor,
        action="device.transition",
        obj=device,
        changes={"state": [previous, spec.target], "transition": spec.name, "reason": reason},
    )
    payload = _payload(device, transition=spec.name, reason=reason)
    events.emit(
        "device.state_changed",
        organization_id=device.organization_id,
        payload=payload | {"from": previous, "to": spec.target},
        subject=device,
    )
    for event_type in lifecycle.events(spec):
        events.emit(
            event_type, organization_id=device.organization_id, payload=payload, subject=device
        )
    message = {"type": "device.state", "id": str(device.pk), "state": device.state}
    transaction.on_commit(lambda: broadcast(device.organization_id, message))
    return device


@transaction.atomic
def device_bulk_transition(
    *, actor: Actor, organization: Organization, selection: dict[str, Any], transition: str
) -> Job:
    """Queue one job moving the devices of ``selection`` (inside ``organization``'s subtree and
    the actor's ``transition`` scope) along ``transition``; the work runs in a Celery task.

    ``selection`` is the selection language, plus ``ids`` (at most 10,000 device ids)."""
    spec = lifecycle.get(transition)
    # refuse a bad selection now, not in the worker
    lifecycle.selection_filter(selection, DeviceGroup.objects.for_actor(actor, "view"))
    params = {
        "transition": spec.name,
        "selection": selection,
        "api_key_id": str(actor.api_key_id) if actor.api_key_id else None,
        "source": actor.source,
        "system": actor.user_id is None and actor.api_key_id is None,
    }
    job = jobs.job_create(actor=actor, organization=organization, kind=BULK_KIND, params=params)
    audit.record(
        actor=actor,
        action="device.bulk_transition",
        obj=job,
        changes={"transition": spec.name, "selection": selection},
    )
    job_id = job.pk
    transaction.on_commit(lambda: _start_bulk(job_id))
    return job


def _start_bulk(job_id: Any) -> None:
    from .tasks import run_bulk_transition

    try:
        run_bulk_transition.apply_async(kwargs={"job_id": str(job_id)}, retry=False)
    except Exception:  # the job stays queued; the admin (or a retry) can run it later
        logger.warning("could not queue bulk transition job %s", job_id, exc_info=True)


def job_actor(job: Job) -> Actor | None:
    """The actor a job acts for, rebuilt from who started it; None when that is gone."""
    from apps.accounts.actors import actor_for_api_key, actor_for_user
    from apps.accounts.models import APIKey
    from apps.core.actors import system_actor

    source = str(job.params.get("source") or "worker")
    if job.created_by_id is not None:
        user = User.objects.filter(pk=job.created_by_id, is_active=True).first()
        return actor_for_user(user, source=source) if user is not None else None
    key_id = job.params.get("api_key_id")
    if key_id:
        key = APIKey.objects.select_related("organization").filter(pk=key_id).first()
        return actor_for_api_key(key, source=source) if key and key.is_usable else None
    if job.params.get("system"):
        return system_actor(job.actor_label or "system", source=source)
    return None


def bulk_transition_run(*, job_id: Any, chunk_size: int = lifecycle.CHUNK_SIZE) -> Job:
    """Run, or resume after a crash or retry, a bulk transition job.

    Set-based, one transaction per chunk that also advances the job's cursor, so a retry
    continues where the last committed chunk ended and never writes an item twice. A finished
    job is left alone."""
    job = Job.objects.select_related("organization").get(pk=job_id)
    if job.status in jobs.FINISHED:
        return job
    actor = job_actor(job)
    if actor is None:
        jobs.job_finish(job.pk, status=JobStatus.FAILED, result={"error": NO_ACTOR})
        return Job.objects.get(pk=job.pk)
    spec = lifecycle.get(job.params["transition"])
    devices = lifecycle.scoped_selection(actor, spec, job.organization, job.params["selection"])
    if job.status == JobStatus.QUEUED:
        job.total = devices.count()
        Job.objects.filter(pk=job.pk).update(
            status=JobStatus.RUNNING, total=job.total, started_at=timezone.now()
        )
    while True:
        with transaction.atomic():
            chunk = lifecycle.apply_chunk(
                job_id=job.pk, actor=actor, transition=spec, devices=devices, chunk_size=chunk_size
            )
            if chunk is not None:
                transaction.on_commit(lambda: jobs.push(job.pk))
        if chunk is None:
            break
    return _finish_bulk(job.pk)


def _finish_bulk(job_id: Any) -> Job:
    job = Job.objects.get(pk=job_id)
    status = JobStatus.PARTIAL if job.failed else JobStatus.SUCCEEDED
    result = {**job.result, "moved": job.succeeded, "refused": job.failed}
    with transaction.atomic():
        jobs.job_finish(job.pk, status=status, result=result)
    return Job.objects.get(pk=job.pk)


# --- ownership transfer ------------------------------------------------------------------------


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
        payload=_payload(transfer.device, transfer=str(transfer.pk), **sides),
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


# --- replacement -------------------------------------------------------------------------------

REPLACEABLE = frozenset(lifecycle.LIVE)
SUCCESSOR_STATES = frozenset({DeviceState.ESCROW, DeviceState.ACTIVE})
IN_SERVICE = frozenset({DeviceState.ACTIVE, DeviceState.MAINTENANCE, DeviceState.SUSPENDED})
INHERITED = ("name", "tags", "attributes", "latitude", "longitude", "site")


def _check_replacement(old: Device, new: Device) -> None:
    if old.state not in REPLACEABLE:
        raise ValidationError({"state": f"Cannot replace a device that is {old.state}."})
    errors: dict[str, str] = {}
    if new.pk == old.pk:
        errors["successor"] = "A device cannot replace itself."
    elif new.state not in SUCCESSOR_STATES:
        errors["successor"] = f"The successor must be in escrow or active; it is {new.state}."
    elif new.manufacturer_id != old.manufacturer_id:
        errors["successor"] = "The successor must come from the same manufacturer."
    elif new.organization_id != old.organization_id:
        errors["successor"] = "The successor must belong to the same organization."
    if errors:
        raise ValidationError(errors)


@transaction.atomic
def device_replace(*, actor: Actor, old: Device, new: Device) -> Device:
    """``new`` takes over ``old``'s identity: name, tags, attributes, location, site and static
    group memberships move to it, it takes ``old``'s service state, and ``old`` becomes
    ``replaced`` (credentials revoked) with a link to it. Configuration and entitlements belong
    to later capabilities: they follow through the ``device.replaced`` event, which carries both
    ids. Both histories stay reachable from either device (``selectors.device_timeline``)."""
    first, second = sorted([old.pk, new.pk])
    locked = {
        device.pk: device
        for device in Device.objects.select_for_update(of=("self",)).filter(pk__in=[first, second])
    }
    old, new = locked[old.pk], locked[new.pk]
    _check_replacement(old, new)
    before = audit.snapshot(new, (*INHERITED, "state"))
    for name in INHERITED:
        setattr(new, name, getattr(old, name))
    if old.state in IN_SERVICE:
        new.state, new.state_changed_at = old.state, timezone.now()
    new.save()
    moved = _move_memberships(old, new)
    previous = old.state
    old.state, old.state_changed_at = DeviceState.REPLACED, timezone.now()
    old.replaced_by, old.claim_code_hash = new, ""
    old.save(
        update_fields=["state", "state_changed_at", "replaced_by", "claim_code_hash", "updated_at"]
    )
    link = {"predecessor": str(old.pk), "successor": str(new.pk)}
    audit.record(
        actor=actor,
        action="device.replace",
        obj=old,
        changes={"state": [previous, DeviceState.REPLACED], **link},
    )
    audit.record(
        actor=actor,
        action="device.replace",
        obj=new,
        changes={
            **audit.diff(before, audit.snapshot(new, (*INHERITED, "state"))),
            "groups": moved,
            **link,
        },
    )
    events.emit(
        "device.replaced",
        organization_id=old.organization_id,
        payload={"old": str(old.pk), "new": str(new.pk), "organization": str(old.organization_id)},
        subject=old,
    )
    events.emit(
        "device.credentials_revoked",
        organization_id=old.organization_id,
        payload=_payload(old, transition="replace", reason=""),
        subject=old,
    )
    return new


def _move_memberships(old: Device, new: Device) -> int:
    """Static group memberships move to the successor (set-based); returns how many."""
    group_ids = list(GroupMembership.objects.filter(device=old).values_list("group_id", flat=True))
    GroupMembership.objects.bulk_create(
        [GroupMembership(group_id=group_id, device=new) for group_id in group_ids],
        ignore_conflicts=True,
    )
    GroupMembership.objects.filter(device=old).delete()
    return len(group_ids)
