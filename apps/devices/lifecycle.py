"""The device lifecycle: a small table-driven state machine.

Every transition names its source states, its target, the permission it requires, an optional
guard and its effects. The table is the whole truth: services (one device, in
``services.device_transition``) and the set-based bulk runner (``services.bulk_transition_run``)
both read it, so a device can never reach a state the table does not allow.

Why not a library: django-fsm-2 and python-statemachine bind transitions to model instances
(one object, one ``save()``); bulk transitions here are one ``UPDATE`` over thousands of rows, so
guards and effects have to be expressible as SQL as well as per device. A dict of frozen
dataclasses does both in a few lines.

``replaced`` is reached only through ``replacement.device_replace``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.module_loading import import_string

from apps.core import events as core_events
from apps.core.actors import Actor
from apps.core.context import get_request_id
from apps.core.models import AuditLog, Event, EventDelivery, Job
from apps.core.scoping import organization_ids_under

from .choices import DeviceState, TransferStatus
from .selection import selection_q

if TYPE_CHECKING:
    from apps.accounts.models import Organization

    from .models import Device

S = DeviceState


@dataclass(frozen=True)
class Guard:
    """A rule a device must pass, checkable per device and as a set (``blocked()``)."""

    message: str
    blocked: Callable[[], Q]  # the devices this guard refuses, as a filter over Device

    def __call__(self, device: Device, actor: Actor, **kwargs: Any) -> str | None:
        from .models import Device

        refused = Device.objects.filter(self.blocked(), pk=device.pk).exists()
        return self.message if refused else None


@dataclass(frozen=True)
class Effect:
    """What a transition does besides changing the state: column values written in the same
    UPDATE, a domain event per device (emitted in the same transaction), and a set-based hook on
    other tables (a dotted path to ``hook(*, device_ids, actor, transition) -> None``, run in the
    same transaction with the ids of the devices that moved)."""

    updates: dict[str, Any] = field(default_factory=dict)
    event: str = ""
    hook: str = ""

    def run_hook(self, device_ids: list[uuid.UUID], actor: Actor, transition: str) -> None:
        if self.hook and device_ids:
            import_string(self.hook)(device_ids=device_ids, actor=actor, transition=transition)


@dataclass(frozen=True)
class Transition:
    name: str
    sources: frozenset[str]
    target: str
    permission: str = "device.transition"
    guards: tuple[Guard, ...] = ()
    effects: tuple[Effect, ...] = ()

    @property
    def action(self) -> str:
        """The permission's action, as ``for_actor`` takes it."""
        return self.permission.split(".", 1)[1]

    def updates(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for effect in self.effects:
            values.update(effect.updates)
        return values


def _pending_transfer() -> Q:
    from .models import Transfer

    pending = Transfer.objects.filter(device=OuterRef("pk"), status=TransferStatus.PENDING)
    return Q(Exists(pending))


NO_PENDING_TRANSFER = Guard(
    message="The device has a pending transfer; cancel it first.", blocked=_pending_transfer
)
REVOKE_CREDENTIALS = Effect(
    updates={"claim_code_hash": ""},
    event="device.credentials_revoked",
    hook="apps.devices.credentials.revoke_on_transition",
)
# activation applies the provisioning templates (once: a device keeps what it got)
PROVISION = Effect(hook="apps.devices.provisioning.apply_on_activation")
LIVE = frozenset({S.ESCROW, S.DISCOVERED, S.ACTIVE, S.MAINTENANCE, S.SUSPENDED})

TRANSITIONS: dict[str, Transition] = {
    t.name: t
    for t in (
        Transition(
            "activate",
            frozenset({S.ESCROW, S.DISCOVERED, S.MAINTENANCE, S.SUSPENDED}),
            S.ACTIVE,
            guards=(NO_PENDING_TRANSFER,),
            effects=(PROVISION,),
        ),
        Transition("approve", frozenset({S.DISCOVERED}), S.ACTIVE, effects=(PROVISION,)),
        # rejecting a quarantined device ends it for good: its factory credentials too
        Transition(
            "reject", frozenset({S.DISCOVERED}), S.DECOMMISSIONED, effects=(REVOKE_CREDENTIALS,)
        ),
        Transition("enter_maintenance", frozenset({S.ACTIVE}), S.MAINTENANCE),
        Transition("exit_maintenance", frozenset({S.MAINTENANCE}), S.ACTIVE),
        Transition("suspend", frozenset({S.ACTIVE, S.MAINTENANCE}), S.SUSPENDED),
        Transition("resume", frozenset({S.SUSPENDED}), S.ACTIVE),
        Transition(
            "decommission",
            LIVE,
            S.DECOMMISSIONED,
            permission="device.delete",
            guards=(NO_PENDING_TRANSFER,),
            effects=(REVOKE_CREDENTIALS,),
        ),
    )
}
INITIAL_STATES = frozenset({S.ESCROW, S.DISCOVERED, S.ACTIVE})
# The transition that brings a selection into a target state (bulk actions offer targets).
BY_TARGET = {
    S.ACTIVE: "activate",
    S.MAINTENANCE: "enter_maintenance",
    S.SUSPENDED: "suspend",
    S.DECOMMISSIONED: "decommission",
}


def get(name: str) -> Transition:
    """The transition called ``name``; ValidationError naming the field when there is none."""
    try:
        return TRANSITIONS[name]
    except KeyError:
        raise ValidationError({"transition": f"Unknown transition: {name}."}) from None


def refusal(transition: Transition, state: str) -> str:
    return f"Cannot {transition.name} a device that is {state}."


def check(transition: Transition, device: Device, actor: Actor, **kwargs: Any) -> None:
    """Refuse an illegal transition, or one a guard blocks, naming the ``state`` field."""
    if device.state not in transition.sources:
        raise ValidationError({"state": refusal(transition, device.state)})
    for guard in transition.guards:
        message = guard(device, actor, **kwargs)
        if message:
            raise ValidationError({"state": message})


def run_hooks(transition: Transition, device_ids: list[uuid.UUID], actor: Actor) -> None:
    """The set-based hooks of ``transition``'s effects, for the devices that moved."""
    for effect in transition.effects:
        effect.run_hook(device_ids, actor, transition.name)


def events(transition: Transition) -> list[str]:
    """The extra event types the effects of ``transition`` emit per device."""
    return [effect.event for effect in transition.effects if effect.event]


# --- the table applied to a set (bulk transitions) ---------------------------------------------

CHUNK_SIZE = 10_000
MAX_SELECTED_IDS = 10_000
DEVICE_TYPE = "devices.device"


def selection_filter(selection: Any, groups: QuerySet[Any] | None = None) -> Q:
    """The selection language (``selection_q``) plus ``ids``: an explicit list of device ids.
    ``groups``: the groups the caller may name (``group`` key)."""
    if not isinstance(selection, dict):
        raise ValidationError({"filter": "Must be an object."})
    spec = dict(selection)
    ids = spec.pop("ids", None)
    condition = selection_q(spec, groups=groups)
    if ids is not None:
        if not isinstance(ids, list) or len(ids) > MAX_SELECTED_IDS:
            raise ValidationError({"ids": f"Must be a list of at most {MAX_SELECTED_IDS} ids."})
        try:
            condition &= Q(pk__in=[uuid.UUID(str(item)) for item in ids])
        except ValueError:
            raise ValidationError({"ids": "Must be a list of ids."}) from None
    return condition


def scoped_selection(
    actor: Actor, transition: Transition, organization: Organization, selection: Any
) -> QuerySet[Device]:
    """The devices of ``selection`` in ``organization``'s subtree that ``actor`` may move."""
    from .models import Device, DeviceGroup

    groups = DeviceGroup.objects.for_actor(actor, "view")
    return (
        Device.objects.for_actor(actor, transition.action)
        .filter(organization__in=organization_ids_under([organization.path]))
        .filter(selection_filter(selection, groups))
    )


@dataclass(frozen=True)
class Moved:
    id: uuid.UUID
    previous: str
    organization_id: uuid.UUID
    repr: str


@dataclass(frozen=True)
class ChunkResult:
    last_id: uuid.UUID
    processed: int
    succeeded: int
    failed: int


def apply_chunk(
    *,
    job_id: uuid.UUID,
    actor: Actor,
    transition: Transition,
    devices: QuerySet[Device],
    chunk_size: int = CHUNK_SIZE,
) -> ChunkResult | None:
    """Move the next chunk after the job's cursor, in the caller's transaction: lock the job,
    one UPDATE, one INSERT ... SELECT of the items, the audit rows and events in bulk, the new
    cursor and counters. ``None`` when nothing is left. A fixed number of queries per chunk."""
    job = Job.objects.select_for_update().get(pk=job_id)
    cursor = job.result.get("cursor")
    remaining = devices.filter(pk__gt=cursor) if cursor else devices
    ids = list(remaining.order_by("pk").values_list("pk", flat=True)[:chunk_size])
    if not ids:
        return None
    moved = _move(ids, transition)
    run_hooks(transition, [row.id for row in moved], actor)
    succeeded, failed = _record_items(job.pk, ids, [row.id for row in moved], transition)
    _audit(actor, transition, job.pk, moved)
    _events(transition, moved)
    result = ChunkResult(ids[-1], len(ids), succeeded, failed)
    Job.objects.filter(pk=job.pk).update(
        processed=job.processed + result.processed,
        succeeded=job.succeeded + succeeded,
        failed=job.failed + failed,
        result={**job.result, "cursor": str(result.last_id)},
        updated_at=timezone.now(),
    )
    return result


def _move(ids: list[uuid.UUID], transition: Transition) -> list[Moved]:
    """One UPDATE of the eligible devices among ``ids``, returning each one's old state."""
    from .models import Device

    eligible = Device.objects.filter(pk__in=ids, state__in=sorted(transition.sources))
    for guard in transition.guards:
        eligible = eligible.exclude(guard.blocked())
    sql, params = eligible.order_by("pk").values_list("pk", "state").query.sql_with_params()
    assignments = ["state = %s", "state_changed_at = %s", "updated_at = %s"]
    now = timezone.now()
    values: list[Any] = [transition.target, now, now]
    for name, value in transition.updates().items():
        assignments.append(f"{Device._meta.get_field(name).column} = %s")  # type: ignore[union-attr]
        values.append(value)
    statement = (
        f"WITH old (id, state) AS ({sql} FOR UPDATE) "  # noqa: S608 - columns from the model, values bound
        f"UPDATE devices_device d SET {', '.join(assignments)} FROM old "
        "WHERE d.id = old.id RETURNING d.id, old.state, d.organization_id, d.name, d.serial"
    )
    with connection.cursor() as cursor:
        cursor.execute(statement, [*params, *values])
        rows = cursor.fetchall()
    return [Moved(row[0], row[1], row[2], row[3] or row[4]) for row in rows]


def _record_items(
    job_id: uuid.UUID, ids: list[uuid.UUID], moved: list[uuid.UUID], transition: Transition
) -> tuple[int, int]:
    """One INSERT ... SELECT of the per-device items; returns (succeeded, failed)."""
    guard_message = " ".join(guard.message for guard in transition.guards)
    statement = """
        WITH items AS (
            INSERT INTO core_jobitem (job_id, key, ok, message)
            SELECT %(job)s, d.id::text, d.state = %(target)s,
                CASE WHEN d.id = ANY(%(moved)s) THEN ''
                     WHEN d.state = %(target)s THEN 'Already ' || d.state || '.'
                     WHEN d.state = ANY(%(sources)s) THEN %(guard)s
                     ELSE 'Cannot ' || %(name)s || ' a device that is ' || d.state || '.'
                END
            FROM devices_device d WHERE d.id = ANY(%(ids)s) ORDER BY d.id
            RETURNING ok
        )
        SELECT count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok) FROM items
    """
    parameters: dict[str, Any] = {
        "job": job_id,
        "target": transition.target,
        "moved": moved,
        "sources": sorted(transition.sources),
        "guard": guard_message,
        "name": transition.name,
        "ids": ids,
    }
    with connection.cursor() as cursor:
        cursor.execute(statement, parameters)
        succeeded, failed = cursor.fetchone()
    return int(succeeded), int(failed)


def _audit(actor: Actor, transition: Transition, job_id: uuid.UUID, moved: list[Moved]) -> None:
    """One audit row per moved device, written in one statement (``audit.record``'s shape)."""
    request_id = get_request_id()
    AuditLog.objects.bulk_create(
        AuditLog(
            organization_id=row.organization_id,
            actor_kind=str(actor.kind),
            actor_user_id=actor.user_id,
            actor_api_key_id=actor.api_key_id,
            actor_device_id=actor.device_id,
            actor_label=actor.label[:255],
            source=actor.source,
            action="device.transition",
            object_type=DEVICE_TYPE,
            object_id=str(row.id),
            object_repr=row.repr[:255],
            changes={
                "state": [row.previous, transition.target],
                "transition": transition.name,
                "reason": "",
                "job": str(job_id),
            },
            request_id=request_id,
        )
        for row in moved
    )


def _events(transition: Transition, moved: list[Moved]) -> None:
    def payload(row: Moved) -> dict[str, Any]:
        return {"id": str(row.id), "transition": transition.name, "reason": ""}

    emit_many(
        "device.state_changed",
        [
            (
                row.organization_id,
                str(row.id),
                payload(row) | {"from": row.previous, "to": transition.target},
            )
            for row in moved
        ],
    )
    for event_type in events(transition):
        emit_many(event_type, [(row.organization_id, str(row.id), payload(row)) for row in moved])


def emit_many(
    event_type: str,
    rows: list[tuple[uuid.UUID | None, str, dict[str, Any]]],
    subject_type: str = DEVICE_TYPE,
) -> int:
    """``apps.core.events.emit`` for many subjects at once: the events and their deliveries in
    two statements, one dispatcher wake-up after commit. ``rows``: (organization id, subject id,
    payload). Returns how many events were written."""
    if not rows:
        return 0
    created = Event.objects.bulk_create(
        Event(
            type=event_type,
            organization_id=organization_id,
            subject_type=subject_type,
            subject_id=subject_id,
            payload=payload,
        )
        for organization_id, subject_id, payload in rows
    )
    wanted = sorted(c.name for c in core_events.consumers().values() if c.wants(event_type))
    if wanted:
        EventDelivery.objects.bulk_create(
            EventDelivery(event=event, consumer=name) for event in created for name in wanted
        )
        pending = transaction.get_connection().run_on_commit
        if not any(entry[1] is core_events.wake_dispatcher for entry in pending):
            transaction.on_commit(core_events.wake_dispatcher)
    return len(created)
