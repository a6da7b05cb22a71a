"""The command catalog of profile versions: which versions define a command, with what schema.

A command is validated against every catalog entry of that name in the profiles the request
may use (the named profile, or every profile the organization's devices can have: its own, its
ancestors' and its descendants'); each device then gets it only if its own profile version
defines it and accepts the arguments.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db.models import Q
from jsonschema import Draft202012Validator

from apps.core.scoping import ancestor_ids
from apps.profiles.models import ProfileVersion

if TYPE_CHECKING:
    from apps.accounts.models import Organization

CRITICAL = "critical"
NORMAL = "normal"


@dataclass(frozen=True)
class Entry:
    """One profile version's definition of a command."""

    version_id: uuid.UUID
    profile_id: uuid.UUID
    label: str  # "<profile> v<number>"
    schema: dict[str, Any]
    criticality: str


def entry_of(version: ProfileVersion, name: str) -> Entry | None:
    """The version's catalog entry for ``name``, or None."""
    for command in version.command_catalog or []:
        if isinstance(command, dict) and command.get("name") == name:
            return Entry(
                version_id=version.pk,
                profile_id=version.profile_id,
                label=str(version),
                schema=command.get("schema") or {"type": "object"},
                criticality=str(command.get("criticality") or NORMAL),
            )
    return None


def entries(
    *, organization: Organization, name: str, profile_id: uuid.UUID | None = None
) -> list[Entry]:
    """Every catalog entry for ``name`` in the profiles usable in ``organization``."""
    usable = Q(profile__organization__path__startswith=organization.path) | Q(
        profile__organization_id__in=ancestor_ids([organization.path])
    )
    versions = ProfileVersion.objects.filter(usable, command_catalog__contains=[{"name": name}])
    if profile_id is not None:
        versions = versions.filter(profile_id=profile_id)
    found = (entry_of(version, name) for version in versions.select_related("profile"))
    return [entry for entry in found if entry is not None]


def argument_errors(schema: dict[str, Any], arguments: Any) -> list[str]:
    """Every way ``arguments`` break ``schema``, as ``"<path>: <message>"`` lines."""
    validator = Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(arguments), key=lambda error: list(error.path))
    return [
        f"{'/'.join(str(p) for p in error.path) or '(arguments)'}: {error.message}"
        for error in errors
    ]


def criticality(found: list[Entry]) -> str:
    """The highest criticality among the entries."""
    return CRITICAL if any(entry.criticality == CRITICAL for entry in found) else NORMAL
