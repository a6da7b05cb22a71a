"""What a change request can do: one ``ChangeKind`` per kind, registered by its app.

``apps.commands`` registers ``command``, ``apps.configuration`` registers ``configuration``
(their ``AppConfig.ready``); ``apps.ota`` will register ``deployment``. The change-request
mechanism (``apps.changes.services``) never knows more about a kind than this protocol.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from apps.accounts.models import Organization
    from apps.core.actors import Actor

    from .models import ChangeRequest

__all__ = ["ChangeKind", "DevicePreview", "Facts", "get", "names", "register"]


@dataclass(frozen=True)
class Facts:
    """What an approval policy looks at, from the kind: a command's criticality (``normal``
    or ``critical``, None for other kinds), the configuration keys the change touches (dotted
    paths) and, among them, those the profile's configuration schema marks critical."""

    criticality: str | None = None
    configuration_keys: frozenset[str] = frozenset()
    profile_ids: frozenset[uuid.UUID] = frozenset()  # the profiles the spec is about, if any
    critical_configuration_keys: frozenset[str] = frozenset()  # marked critical by the schema


@dataclass
class DevicePreview:
    """One device in a dry run: what would change on it (a diff for configuration)."""

    device_id: uuid.UUID
    serial: str
    summary: str
    diff: list[dict[str, Any]] = field(default_factory=list)  # [{"op", "path", "from", "to"}]


class ChangeKind(Protocol):
    name: str

    def validate(self, *, organization: Organization, spec: dict[str, Any]) -> dict[str, Any]:
        """The normalized spec; raises django ValidationError({field: [messages]}) if bad."""

    def facts(self, *, request: ChangeRequest) -> Facts: ...

    def preview(
        self, *, request: ChangeRequest, device_ids: list[uuid.UUID]
    ) -> list[DevicePreview]:
        """The dry run for these devices (the caller pages them). Reads only."""

    def execute(self, *, request: ChangeRequest, device_ids: list[uuid.UUID], actor: Actor) -> None:
        """Create the per-device work in the caller's transaction; side effects on commit.
        Devices that may not receive it (decommissioned...) are the caller's to exclude."""

    def cancel(self, *, request: ChangeRequest, actor: Actor) -> int:
        """Cancel what has not run yet; returns how many per-device items were cancelled."""

    def progress(self, *, request: ChangeRequest) -> dict[str, int]:
        """Per-device counts by status (``total`` included)."""

    # Optional: ``details_url(*, request) -> str | None``, the kind's own page for an executed
    # request (linked from the request's page).


_KINDS: dict[str, ChangeKind] = {}


def register(kind: ChangeKind) -> None:
    _KINDS[kind.name] = kind


def get(name: str) -> ChangeKind:
    """The kind registered under ``name``; KeyError if none."""
    return _KINDS[name]


def names() -> list[str]:
    return sorted(_KINDS)
