"""Build ``Actor`` objects from users and API keys (the only place that reads memberships)."""

from __future__ import annotations

from apps.core.actors import Actor, ActorKind, Grant

from .models import APIKey, Membership, User
from .roles import permissions_for


def actor_for_user(user: User, *, source: str = "api") -> Actor:
    """One query: the user's memberships with their organizations' paths."""
    memberships = Membership.objects.filter(user=user, organization__is_active=True).values_list(
        "organization_id", "organization__path", "role"
    )
    grants = tuple(
        Grant(organization_id=org_id, organization_path=path, permissions=permissions_for(role))
        for org_id, path, role in memberships
    )
    return Actor(
        kind=ActorKind.USER,
        label=user.email,
        grants=grants,
        user_id=user.pk,
        is_platform_staff=user.is_superuser,
        source=source,
    )


def actor_for_api_key(key: APIKey, *, source: str = "api") -> Actor:
    """An API key holds its role's permissions (narrowed when the key lists some) on its subtree."""
    permissions = permissions_for(key.role)
    if key.permissions:
        permissions = permissions & frozenset(key.permissions)
    organization = key.organization
    grant = Grant(
        organization_id=organization.pk,
        organization_path=organization.path,
        permissions=permissions,
    )
    return Actor(
        kind=ActorKind.API_KEY,
        label=f"API key {key.name} ({key.prefix})",
        grants=(grant,) if organization.is_active else (),
        api_key_id=key.pk,
        source=source,
    )
