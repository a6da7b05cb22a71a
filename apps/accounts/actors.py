"""Build ``Actor`` objects from users and API keys (the only place that reads memberships)."""

from __future__ import annotations

from django.db import connection

from apps.core.actors import Actor, ActorKind, Grant

from .models import APIKey, Organization, User
from .roles import permissions_for

SUBTREES_SQL = """
SELECT m.organization_id, o.path, m.role, array_agg(s.id)
FROM accounts_membership m
JOIN accounts_organization o ON o.id = m.organization_id
JOIN accounts_organization s ON s.path LIKE o.path || '%%'
WHERE m.user_id = %s AND o.is_active
GROUP BY m.organization_id, o.path, m.role
"""


def actor_for_user(user: User, *, source: str = "api") -> Actor:
    """One query: the user's memberships, their organizations' paths and subtree ids."""
    with connection.cursor() as cursor:
        cursor.execute(SUBTREES_SQL, [user.pk])
        rows = cursor.fetchall()
    grants = tuple(
        Grant(
            organization_id=org_id,
            organization_path=path,
            permissions=permissions_for(role),
            subtree_ids=tuple(subtree),
        )
        for org_id, path, role, subtree in rows
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
    subtree = Organization.objects.filter(path__startswith=organization.path).values_list(
        "pk", flat=True
    )
    grant = Grant(
        organization_id=organization.pk,
        organization_path=organization.path,
        permissions=permissions,
        subtree_ids=tuple(subtree),
    )
    return Actor(
        kind=ActorKind.API_KEY,
        label=f"API key {key.name} ({key.prefix})",
        grants=(grant,) if organization.is_active else (),
        api_key_id=key.pk,
        source=source,
    )
