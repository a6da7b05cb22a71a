"""Who is acting: a user, an API key, a device, or the system itself.

An ``Actor`` carries the organization subtrees in which each permission holds. The accounts app
builds it from memberships or an API key; everything else only asks it questions, so scoping
never needs to know where the permissions came from.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum


class ActorKind(StrEnum):
    USER = "user"
    API_KEY = "api_key"
    DEVICE = "device"
    SYSTEM = "system"


@dataclass(frozen=True)
class Grant:
    """A set of permissions held on one organization and everything below it."""

    organization_id: uuid.UUID
    organization_path: str
    permissions: frozenset[str]
    # The ids of every organization in the subtree, when known. Scoping then filters with a
    # literal list, which the planner estimates from its real size (a subquery is estimated as
    # an average organization and can lead to a scan of a million-device table for a tiny one).
    subtree_ids: tuple[uuid.UUID, ...] | None = None


@dataclass(frozen=True)
class Actor:
    kind: ActorKind
    label: str
    grants: tuple[Grant, ...] = ()
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    device_id: uuid.UUID | None = None
    is_platform_staff: bool = False
    source: str = "api"
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def paths_for(self, permission: str) -> list[str]:
        """Organization path prefixes where ``permission`` holds (subtree semantics)."""
        return [grant.organization_path for grant in self.grants if permission in grant.permissions]

    def subtree_ids_for(self, permission: str) -> list[uuid.UUID] | None:
        """Ids of every organization where ``permission`` holds, or None when not known."""
        ids: list[uuid.UUID] = []
        for grant in self.grants:
            if permission in grant.permissions:
                if grant.subtree_ids is None:
                    return None
                ids.extend(grant.subtree_ids)
        return ids

    def has_perm(self, permission: str, organization_path: str) -> bool:
        """Whether ``permission`` holds on the organization with this materialized path."""
        if self.is_platform_staff:
            return True
        return any(organization_path.startswith(path) for path in self.paths_for(permission))

    def has_any(self, permission: str) -> bool:
        return self.is_platform_staff or bool(self.paths_for(permission))

    def permissions_on(self, organization_path: str) -> frozenset[str]:
        held: set[str] = set()
        for grant in self.grants:
            if organization_path.startswith(grant.organization_path):
                held |= grant.permissions
        return frozenset(held)


SYSTEM = Actor(kind=ActorKind.SYSTEM, label="system", is_platform_staff=True, source="worker")


def system_actor(label: str = "system", source: str = "worker") -> Actor:
    return Actor(kind=ActorKind.SYSTEM, label=label, is_platform_staff=True, source=source)
