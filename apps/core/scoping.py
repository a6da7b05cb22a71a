"""The one scoping choke point: ``Model.objects.for_actor(actor, action)``.

A scoped model names the permission resource it belongs to (``scope_resource``) and how to reach
its organization's materialized path. ``for_actor`` returns only the rows the actor may act on
with ``action``: rows in an organization subtree where the actor's role grants
``<resource>.<action>``, plus rows shared with the actor's user through django-guardian
per-object grants (direct foreign-key tables) when the model has them.

A model with ``scope_shared_down = True`` (device profiles) is also visible, for ``view`` only,
to everyone below its organization: the ancestors are read off the materialized path.

Every entry point uses it: API viewsets, portal views, admin querysets for non-superusers,
websocket consumers and tasks that act for a user.
"""

from __future__ import annotations

import uuid
from functools import reduce
from operator import or_
from typing import TYPE_CHECKING, Any, Self

from django.apps import apps
from django.contrib.postgres.expressions import ArraySubquery
from django.db import models
from django.db.models import BooleanField, F, Func, Q

if TYPE_CHECKING:
    from .actors import Actor


# Up to this many organizations, scoping filters with a literal id list (see Grant.subtree_ids).
LITERAL_IDS_LIMIT = 5000


def permission_name(model: type[models.Model], action: str) -> str:
    resource = getattr(model, "scope_resource", model._meta.model_name)
    return f"{resource}.{action}"


def organization_ids_under(paths: list[str]) -> models.QuerySet[Any]:
    """Subquery of the ids of every organization in the subtrees rooted at ``paths``."""
    organization = apps.get_model("accounts", "Organization")
    condition = reduce(or_, (Q(path__startswith=path) for path in paths))
    return organization.objects.filter(condition).values("pk")


def in_array(field: str, subquery: models.QuerySet[Any]) -> Q:
    """``<field> = ANY(ARRAY(<subquery>))``: the rows of ``<field> IN (<subquery>)``, worded so
    that PostgreSQL can answer it from an index inside an OR. With ``IN``, an OR of the role
    branch and the grant branches makes it read every row of the table and probe each against
    the grants; with ``= ANY(ARRAY(...))`` each subquery runs once (an init plan) and the OR
    becomes a BitmapOr of the organization index and the primary key (bench/registry.py)."""
    return Q(
        Func(
            F(field),
            ArraySubquery(subquery),
            arg_joiner=" = ANY(",
            template="%(expressions)s)",
            output_field=BooleanField(),
        )
    )


def ancestor_ids(paths: list[str]) -> list[uuid.UUID]:
    """Ids of the strict ancestors of the organizations at ``paths`` (read off the paths)."""
    found: set[uuid.UUID] = set()
    for path in paths:
        found.update(uuid.UUID(segment) for segment in path.split("/")[:-2])
    return sorted(found)


class ScopedQuerySet(models.QuerySet[Any]):
    def for_actor(self, actor: Actor, action: str = "view") -> Self:
        """Rows of this model that ``actor`` may ``action``; empty when none."""
        model = self.model
        if actor.is_platform_staff:
            return self.all()
        condition = self._role_condition(actor, permission_name(model, action))
        grants = self._grant_condition(actor, action)
        if grants is not None:
            condition = grants if condition is None else condition | grants
        if condition is None:
            return self.none()
        return self.filter(condition)

    def _role_condition(self, actor: Actor, permission: str) -> Q | None:
        paths = actor.paths_for(permission)
        if not paths:
            return None
        path_field: str | None = getattr(self.model, "scope_path_field", None)
        if path_field is not None:  # the organization model itself
            return reduce(or_, (Q(**{f"{path_field}__startswith": path}) for path in paths))
        organization_field: str = getattr(self.model, "scope_organization_field", "organization")
        known = actor.subtree_ids_for(permission)
        if known is not None and len(known) <= LITERAL_IDS_LIMIT:
            condition = Q(**{f"{organization_field}__in": known})
        else:
            condition = Q(**{f"{organization_field}__in": organization_ids_under(paths)})
        if getattr(self.model, "scope_shared_down", False) and permission.endswith(".view"):
            # shared down the tree: rows of the ancestors of every organization the actor sees
            ancestors = ancestor_ids(paths)
            if ancestors:
                condition |= Q(**{f"{organization_field}__in": ancestors})
        return condition

    def _grant_condition(self, actor: Actor, action: str) -> Q | None:
        """Explicit per-object grants (django-guardian, direct foreign-key tables): to the
        actor's user, and to organizations in which the actor holds the permission."""
        codename = f"{action}_{self.model._meta.model_name}"
        conditions: list[Q] = []
        user_grants: str | None = getattr(self.model, "scope_user_grant_model", None)
        if user_grants is not None and actor.user_id is not None:
            granted = apps.get_model(user_grants).objects.filter(
                user_id=actor.user_id, permission__codename=codename
            )
            conditions.append(in_array("pk", granted.values("content_object_id")))
        group_grants: str | None = getattr(self.model, "scope_group_grant_model", None)
        paths = actor.paths_for(permission_name(self.model, action))
        if group_grants is not None and paths:
            granted = apps.get_model(group_grants).objects.filter(
                group__organization__in=organization_ids_under(paths),
                permission__codename=codename,
            )
            conditions.append(in_array("pk", granted.values("content_object_id")))
        return reduce(or_, conditions) if conditions else None


class ScopedManager(models.Manager.from_queryset(ScopedQuerySet)):  # type: ignore[misc]
    pass
