"""Writes of the fleet registry: register, update and lifecycle transitions (one device or a
selection, as a job). Ownership transfer and claim codes live in ``transfers.py``, replacement
in ``replacement.py``.

Each service runs in one transaction, writes its audit record and domain event there and leaves
side effects (websocket pushes, Celery tasks) to ``transaction.on_commit``. Front doors check
that the actor may act on the device or organization (``access.py``); services enforce the
business rules and raise ``ValidationError`` naming the field.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.accounts.models import Organization
from apps.core import audit, events, live
from apps.core.actors import Actor
from apps.core.models import Job, JobStatus
from apps.profiles.models import DeviceProfile, ProfileVersion
from apps.profiles.services import attributes_errors

from . import jobs, lifecycle
from .choices import DeviceState
from .models import Device, DeviceGroup

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
    """Push a device message to the organization's open pages (readers with device.view)."""
    live.broadcast(organization_id=organization_id, permission="device.view", data=data)


def device_payload(device: Device, **extra: Any) -> dict[str, Any]:
    return {"id": str(device.pk), "serial": device.serial, **extra}


# --- register and update -----------------------------------------------------------------------


# Why a lock on the *profile* row, and why FOR KEY SHARE:
# ``profiles.services.profile_update`` locks the profile row FOR UPDATE, then edits the latest
# version in place when no device uses it. The device INSERT's own foreign-key check only takes
# FOR KEY SHARE on the *version* row, which an in-place UPDATE of that row (FOR NO KEY UPDATE)
# does not wait for; and profile_update cannot see an uncommitted device. So whoever points a
# device at a version first takes FOR KEY SHARE on its profile row: it conflicts with
# profile_update's FOR UPDATE (one waits for the other's commit, and profile_update then sees
# the device and makes a new version instead), yet it is the weakest row lock, so concurrent
# registrations and imports never wait for each other, nor for ordinary UPDATEs of the profile
# (FOR NO KEY UPDATE). FOR SHARE would also block those for no gain. Django's
# select_for_update has no share modes, hence the SQL. Take it *before* reading the version's
# schema: after a wait, READ COMMITTED's next statement sees the edit that was committed.
HOLD_PROFILES_SQL = """
SELECT profile.id FROM {profiles} AS profile
WHERE profile.id IN (
    SELECT version.profile_id FROM {versions} AS version WHERE version.id = ANY(%s::uuid[])
)
ORDER BY profile.id
FOR KEY SHARE OF profile
"""


def hold_profile_versions(version_ids: Iterable[Any]) -> None:
    """Keep the profiles of ``version_ids`` from editing those versions in place until the
    caller's transaction ends (see above). Call it inside the transaction that assigns a
    version to a device, before validating against the version."""
    sql = HOLD_PROFILES_SQL.format(
        profiles=DeviceProfile._meta.db_table, versions=ProfileVersion._meta.db_table
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [[str(version_id) for version_id in version_ids]])


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
    hold_profile_versions([profile_version.pk])
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
        payload=device_payload(device, state=state, profile_version=str(version.pk)),
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
        payload=device_payload(device, fields=sorted(changes)),
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
    lifecycle.run_hooks(spec, [device.pk], actor)
    audit.record(
        actor=actor,
        action="device.transition",
        obj=device,
        changes={"state": [previous, spec.target], "transition": spec.name, "reason": reason},
    )
    payload = device_payload(device, transition=spec.name, reason=reason)
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


def bulk_transition_run(*, job_id: Any, chunk_size: int = lifecycle.CHUNK_SIZE) -> Job:
    """Run, or resume after a crash or retry, a bulk transition job.

    Set-based, one transaction per chunk that also advances the job's cursor, so a retry
    continues where the last committed chunk ended and never writes an item twice. A finished
    job is left alone. A cancelled one (``jobs.job_cancel``) stops before its next chunk and
    keeps the counts done so far; a queued one never starts."""
    job = Job.objects.select_related("organization").get(pk=job_id)
    if job.status == JobStatus.CANCELLED and job.finished_at is None:
        return _finish_bulk(job.pk, cancelled=True)  # cancelled while no worker ran it
    if job.status in jobs.FINISHED:
        return job
    actor = jobs.job_actor(job)
    if actor is None:
        jobs.job_finish(job.pk, status=JobStatus.FAILED, result={"error": NO_ACTOR})
        return Job.objects.get(pk=job.pk)
    spec = lifecycle.get(job.params["transition"])
    devices = lifecycle.scoped_selection(actor, spec, job.organization, job.params["selection"])
    if job.status == JobStatus.QUEUED:
        job.total = devices.count()
        started = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING, total=job.total, started_at=timezone.now()
        )
        if not started:  # cancelled (or started elsewhere) since it was read
            return Job.objects.get(pk=job.pk)
    cancelled = _bulk_chunks(job.pk, actor, spec, devices, chunk_size)
    return _finish_bulk(job.pk, cancelled=cancelled)


def _bulk_chunks(
    job_id: Any,
    actor: Actor,
    spec: lifecycle.Transition,
    devices: QuerySet[Device],
    chunk_size: int,
) -> bool:
    """Apply chunk after chunk until none is left (False) or the job is cancelled (True). The
    check is the first statement of each chunk's transaction: its row lock orders it after any
    cancel in flight, so once a cancel has committed no further chunk starts."""
    while True:
        with transaction.atomic():
            if jobs.job_cancelled(job_id):
                return True
            chunk = lifecycle.apply_chunk(
                job_id=job_id, actor=actor, transition=spec, devices=devices, chunk_size=chunk_size
            )
            if chunk is None:
                return False
            transaction.on_commit(lambda: jobs.push(job_id))


def _finish_bulk(job_id: Any, *, cancelled: bool = False) -> Job:
    job = Job.objects.get(pk=job_id)
    status = JobStatus.PARTIAL if job.failed else JobStatus.SUCCEEDED
    result = {**job.result, "moved": job.succeeded, "refused": job.failed}
    with transaction.atomic():
        if cancelled:
            jobs.job_log(
                job.pk,
                f"Stopped after {job.processed} of {job.total} devices: {job.succeeded} moved, "
                f"{job.failed} refused.",
                level="warning",
            )
        jobs.job_finish(job.pk, status=status, result=result)
    return Job.objects.get(pk=job.pk)
