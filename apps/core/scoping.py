"""The one scoping choke point: ``Model.objects.for_actor(actor, action)``.

A scoped model names the permission resource it belongs to (``scope_resource``) and how to reach
its organization's materialized path. ``for_actor`` returns only the rows the actor may act on
with ``action``: rows in an organization subtree where the actor's role grants
``<resource>.<action>``, plus rows shared with the actor's user through django-guardian
per-object grants (direct foreign-key tables) when the model has them.

Every entry point uses it: API viewsets, portal views, admin querysets for non-superusers,
websocket consumers and tasks that act for a user.
"""

from __future__ import annotations

from functools import reduce
from operator import or_
from typing import TYPE_CHECKING, Any, Self

from django.apps import apps
from django.db import models
from django.db.models import Q

if TYPE_CHECKING:
    from .actors import Actor


def permission_name(model: type[models.Model], action: str) -> str:
    resource = getattr(model, "scope_resource", model._meta.model_name)
    return f"{resource}.{action}"


def organization_ids_under(paths: list[str]) -> models.QuerySet[Any]:
    """Subquery of the ids of every organization in the subtrees rooted at ``paths``."""
    organization = apps.get_model("accounts", "Organization")
    condition = reduce(or_, (Q(path__startswith=path) for path in paths))
    return organization.objects.filter(condition).values("pk")


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
        return Q(**{f"{organization_field}__in": organization_ids_under(paths)})

    def _grant_condition(self, actor: Actor, action: str) -> Q | None:
        """Explicit per-object grants to the actor's user (django-guardian, direct FK tables)."""
        user_grants: str | None = getattr(self.model, "scope_user_grant_model", None)
        if user_grants is None or actor.user_id is None:
            return None
        grant_model = apps.get_model(user_grants)
        codename = f"{action}_{self.model._meta.model_name}"
        granted = grant_model.objects.filter(
            user_id=actor.user_id, permission__codename=codename
        ).values("content_object_id")
        return Q(pk__in=granted)


class ScopedManager(models.Manager.from_queryset(ScopedQuerySet)):  # type: ignore[misc]
    pass
