"""The ``command`` change kind: one catalog command, with its arguments, on many devices.

Spec: ``{"command": name, "arguments": {...}, "timeout_s": int, "profile": uuid | None}``.
Executing a request bulk-creates one ``Command`` per device (one statement) and queues its
downlink; a device whose profile version lacks the command, or rejects the arguments, gets a
``failed`` command that is never sent (the dry run says so beforehand).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.urls import reverse
from django.utils import timezone

from apps.changes.kinds import DevicePreview, Facts
from apps.changes.targets import NEVER_RECEIVE
from apps.devices.downlinks import Outgoing, enqueue
from apps.devices.models import Device
from apps.profiles.models import ProfileVersion

from . import catalog, progress
from .choices import CommandStatus
from .models import Command

if TYPE_CHECKING:
    from apps.accounts.models import Organization
    from apps.changes.models import ChangeRequest
    from apps.core.actors import Actor

NAME = "command"
DEFAULT_TIMEOUT_SECONDS = 300
MAX_TIMEOUT_SECONDS = 86_400
REF_TYPE = "command"


def _timeout(value: Any) -> int:
    if value is None:
        return DEFAULT_TIMEOUT_SECONDS
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not 1 <= value <= MAX_TIMEOUT_SECONDS
    ):
        raise ValidationError({"timeout_s": [f"An integer from 1 to {MAX_TIMEOUT_SECONDS}."]})
    return value


def _profile(value: Any) -> uuid.UUID | None:
    if value in (None, ""):
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ValidationError({"profile": ["Not a profile id."]}) from None


@dataclass(frozen=True)
class Verdict:
    """Whether one profile version can run the request's command: an error if not."""

    error: str


def verdict(version: ProfileVersion | None, name: str, arguments: dict[str, Any]) -> Verdict:
    entry = catalog.entry_of(version, name) if version is not None else None
    if entry is None:
        label = str(version) if version is not None else "no profile version"
        return Verdict(f"{label} has no command {name!r} in its catalog.")
    problems = catalog.argument_errors(entry.schema, arguments)
    return Verdict(
        f"Arguments rejected by {entry.label}: {'; '.join(problems)}" if problems else ""
    )


class CommandKind:
    """The ``ChangeKind`` of remote commands (registered in ``CommandsConfig.ready``)."""

    name = NAME

    def validate(self, *, organization: Organization, spec: dict[str, Any]) -> dict[str, Any]:
        name = spec.get("command")
        if not isinstance(name, str) or not name:
            raise ValidationError({"command": ["The name of a command of the profile's catalog."]})
        arguments = spec.get("arguments", {})
        if not isinstance(arguments, dict):
            raise ValidationError({"arguments": ["Must be a JSON object."]})
        timeout, profile_id = _timeout(spec.get("timeout_s")), _profile(spec.get("profile"))
        unknown = sorted(set(spec) - {"command", "arguments", "timeout_s", "profile"})
        if unknown:
            raise ValidationError({"spec": [f"Unknown key {key!r}." for key in unknown]})
        found = catalog.entries(organization=organization, name=name, profile_id=profile_id)
        if not found:
            where = "that profile" if profile_id else "the profiles of this organization"
            raise ValidationError({"command": [f"No command {name!r} in the catalog of {where}."]})
        problems: list[str] = []
        for schema in {json.dumps(entry.schema, sort_keys=True) for entry in found}:
            problems += catalog.argument_errors(json.loads(schema), arguments)
        if problems:
            raise ValidationError({"arguments": sorted(set(problems))})
        return {
            "command": name,
            "arguments": arguments,
            "timeout_s": timeout,
            "profile": str(profile_id) if profile_id else None,
        }

    def facts(self, *, request: ChangeRequest) -> Facts:
        spec = request.spec
        profile_id = _profile(spec.get("profile"))
        found = catalog.entries(
            organization=request.organization, name=str(spec.get("command")), profile_id=profile_id
        )
        return Facts(
            criticality=catalog.criticality(found),
            profile_ids=frozenset(entry.profile_id for entry in found),
        )

    def preview(
        self, *, request: ChangeRequest, device_ids: list[uuid.UUID]
    ) -> list[DevicePreview]:
        name, arguments = str(request.spec["command"]), dict(request.spec.get("arguments") or {})
        devices = Device.objects.filter(pk__in=device_ids).select_related(
            "profile_version__profile"
        )
        call = f"{name} {json.dumps(arguments, sort_keys=True)}"
        previews = []
        for device in sorted(devices, key=lambda d: d.serial):
            problem = verdict(device.profile_version, name, arguments).error
            summary = f"will not run: {problem}" if problem else f"will run {call}"
            previews.append(
                DevicePreview(device_id=device.pk, serial=device.serial, summary=summary)
            )
        return previews

    def execute(self, *, request: ChangeRequest, device_ids: list[uuid.UUID], actor: Actor) -> None:
        now = timezone.now()
        rows = list(
            Device.objects.filter(pk__in=device_ids)
            .exclude(state__in=NEVER_RECEIVE)  # the caller's job; never sent all the same
            .values_list("pk", "organization_id", "profile_version_id")
        )
        commands = _build(request, rows, now)
        insert(commands)
        queued = [command for command in commands if command.status == CommandStatus.QUEUED]
        enqueue([outgoing(command) for command in queued])
        progress.emit_final(
            (c.pk, c.organization_id, c.device_id, c.status, c.error)
            for c in commands
            if c.status != CommandStatus.QUEUED
        )
        if len(queued) < len(commands) or not commands:
            transaction.on_commit(lambda: progress.check_completed([request.pk]))
        progress.push_after_commit(request.pk, request.organization_id)

    def cancel(self, *, request: ChangeRequest, actor: Actor) -> int:
        from .services import commands_cancel

        return commands_cancel(request=request, actor=actor)

    def progress(self, *, request: ChangeRequest) -> dict[str, int]:
        return progress.counts(request.pk)

    def details_url(self, *, request: ChangeRequest) -> str:
        return reverse("commands:progress", args=[request.pk])


def _build(
    request: ChangeRequest, rows: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID | None]], now: datetime
) -> list[Command]:
    from .sweeper import next_attempt

    spec = request.spec
    name, arguments = str(spec["command"]), dict(spec.get("arguments") or {})
    versions = ProfileVersion.objects.select_related("profile").in_bulk(
        {version for _, _, version in rows if version is not None}
    )
    verdicts = {pk: verdict(version, name, arguments) for pk, version in versions.items()}
    missing = verdict(None, name, arguments)
    commands = []
    for device_id, organization_id, version_id in rows:
        problem = verdicts.get(version_id, missing).error if version_id else missing.error
        commands.append(
            Command(
                organization_id=organization_id,
                request_id=request.pk,
                device_id=device_id,
                name=name,
                arguments=arguments,
                status=CommandStatus.FAILED if problem else CommandStatus.QUEUED,
                error=problem,
                finished_at=now if problem else None,
                issued_at=now,
                created_at=now,
                timeout_seconds=int(spec.get("timeout_s") or DEFAULT_TIMEOUT_SECONDS),
                expires_at=request.expires_at,
                next_attempt_at=None if problem else next_attempt(1, now, request.expires_at),
            )
        )
    return commands


INSERT_SQL = """
INSERT INTO commands_command (id, created_at, updated_at, issued_at, organization_id,
    request_id, device_id, name, arguments, status, attempts, next_attempt_at, timeout_seconds,
    finished_at, expires_at, output, error)
SELECT c.id, %(now)s, %(now)s, %(now)s, c.organization_id, %(request)s, c.device_id, %(name)s,
    %(arguments)s::jsonb, c.status, 1, c.next_attempt_at, %(timeout)s, c.finished_at,
    %(expires)s, '{}'::jsonb, c.error
FROM unnest(%(ids)s::uuid[], %(organizations)s::uuid[], %(devices)s::uuid[], %(statuses)s::text[],
    %(next)s::timestamptz[], %(finished)s::timestamptz[], %(errors)s::text[])
    AS c(id, organization_id, device_id, status, next_attempt_at, finished_at, error)
"""


def insert(commands: list[Command]) -> None:
    """Write the request's commands in one statement whatever their number: the rows differ
    only in a few columns, sent as arrays (the ORM's ``bulk_create`` spends seconds preparing
    10,000 rows of 17 values each)."""
    if not commands:
        return
    first = commands[0]
    with connection.cursor() as cursor:
        cursor.execute(
            INSERT_SQL,
            {
                "now": first.issued_at,
                "request": first.request_id,
                "name": first.name,
                "arguments": json.dumps(first.arguments),
                "timeout": first.timeout_seconds,
                "expires": first.expires_at,
                "ids": [c.pk for c in commands],
                "organizations": [c.organization_id for c in commands],
                "devices": [c.device_id for c in commands],
                "statuses": [c.status for c in commands],
                "next": [c.next_attempt_at for c in commands],
                "finished": [c.finished_at for c in commands],
                "errors": [c.error for c in commands],
            },
        )


def document(command: Command) -> dict[str, Any]:
    """What the device receives (MQTT payload, and an item of ``GET /device/v1/commands``)."""
    return {
        "id": str(command.pk),
        "name": command.name,
        "arguments": command.arguments,
        "timeout_s": command.timeout_seconds,
        "issued_at": command.issued_at.isoformat(),
        "expires_at": command.expires_at.isoformat(),
    }


def outgoing(command: Command, *, retry: bool = False) -> Outgoing:
    """The command's downlink; a retry replaces an older copy the publisher still holds."""
    return Outgoing(
        device_id=command.device_id,
        organization_id=command.organization_id,
        topic=f"commands/{command.pk}",
        payload=json.dumps(document(command), separators=(",", ":")).encode(),
        expires_at=command.expires_at,
        ref_type=REF_TYPE,
        ref_id=str(command.pk),
        supersede=retry,
    )
