"""The one scoping choke point: ``Model.objects.for_actor(actor, action)``.

A scoped model names the permission resource it belongs to (``scope_resource``) and how to reach
its organization's materialized path. ``for_actor`` returns only the rows the actor may act on
with ``action``: rows in an organization subtree where the actor's role grants
``<resource>.<action>``, plus rows shared with the actor's user through django-guardian
per-object grants (direct foreign-key tables) when the model has them.

A model with ``scope_shared_down = True`` (device profiles) is also visible, for ``view`` only,
to everyone below its organization: the ancestors are read off the materialized path.

A model whose grant rows carry copies of its sort fields names them in
``scope_grant_sort_fields`` (device groups: ``{"name": "object_name"}``): a plain page of the
scope ordered by them then reads only its first grants (``GrantedIds``), whatever their number.

Every entry point uses it: API viewsets, portal views, admin querysets for non-superusers,
websocket consumers and tasks that act for a user.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from functools import reduce
from operator import or_
from typing import TYPE_CHECKING, Any, Self

from django.apps import apps
from django.contrib.postgres.expressions import ArraySubquery
from django.db import models
from django.db.models import BooleanField, F, Func, Q, Subquery
from django.db.models.sql.where import AND, OR, WhereNode

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.sql.compiler import SQLCompiler
    from django.db.models.sql.query import Query

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


class GrantedIds(Func):
    """``pk = ANY(ARRAY(SELECT content_object_id FROM <grants>))``: the rows shared through a
    guardian direct foreign-key table. Worded so that PostgreSQL can answer it from an index
    inside an OR: with ``pk IN (<grants>)`` an OR of the role branch and the grant branches
    reads every row of the table and probes each against the grants; with ``= ANY(ARRAY(...))``
    each subquery runs once (an init plan) and the OR becomes a BitmapOr of the organization
    index and the primary key.

    When the query being compiled is a page of the scope and nothing else (see ``page_order``),
    the subquery keeps only the first ``LIMIT`` grants in the page's order, read off the grant
    rows (``sort_fields`` names the copies they carry of the model's sort fields): a row of the
    page that is there through a grant is among them, so the page is the same, and it no
    longer costs more the more grants the user holds (bench/registry.py)."""

    arg_joiner = " = ANY("
    template = "%(expressions)s)"
    output_field = BooleanField()

    def __init__(self, grants: models.QuerySet[Any], sort_fields: Mapping[str, str]) -> None:
        super().__init__(F("pk"), ArraySubquery(grants.values("content_object_id")))
        self.scoped_model: type[models.Model] = grants.model._meta.get_field(
            "content_object"
        ).related_model
        self.sort_fields = dict(sort_fields)

    def as_sql(  # type: ignore[override]
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any
    ) -> tuple[str, Sequence[Any]]:
        query = compiler.query
        order = page_order(query, self.scoped_model, self.sort_fields)
        if order is None or query.high_mark is None:
            return super().as_sql(compiler, connection, **extra_context)
        column, granted = self.get_source_expressions()
        first = granted.copy()  # a copy of the resolved subquery, with a copy of its query
        first.query.clear_ordering(force=True)
        first.query.add_ordering(*order)
        first.query.set_limits(high=query.high_mark)
        trimmed = self.copy()
        trimmed.set_source_expressions([column, first])
        return Func.as_sql(trimmed, compiler, connection, **extra_context)


def page_order(
    query: Query, model: type[models.Model], sort_fields: Mapping[str, str]
) -> list[str] | None:
    """The page's ordering in grant columns when ``query`` is ``for_actor(...)`` ordered by
    fields the grant rows carry and sliced, with nothing else narrowing or folding its rows;
    else ``None``. Anything more keeps the whole grants subquery: another filter or a cursor
    could drop rows of the first ``n`` grants, DISTINCT or GROUP BY fold them (the first ``n``
    distinct names may need later grants), an annotation may be a window over every row, and
    SKIP LOCKED skips some."""
    opts = model._meta
    if (
        query.high_mark is None
        or query.model is not model
        or query.combinator
        or query.distinct
        or query.group_by is not None
        or query.annotations
        or query.extra
        or query.extra_order_by
        or query.select_for_update
        or not _scope_only(query.where)
    ):
        return None
    ordering = query.order_by or (opts.ordering if query.default_ordering else None) or ()
    columns = {"pk": "content_object_id", opts.pk.name: "content_object_id", **sort_fields}
    order = []
    for key in ordering:
        if not isinstance(key, str) or key.lstrip("-") not in columns:
            return None
        descending = key.startswith("-") == query.standard_ordering
        order.append(("-" if descending else "") + columns[key.lstrip("-")])
    return order or None


def _scope_only(where: WhereNode) -> bool:
    """Whether the WHERE clause is the one condition ``for_actor`` added (any later filter is
    another child of the root, ANDed)."""
    if where.negated or where.connector != AND or len(where.children) != 1:
        return False
    scope = where.children[0]
    if isinstance(scope, WhereNode):
        if scope.negated or scope.connector != OR:
            return False
        return any(isinstance(getattr(leaf, "lhs", None), GrantedIds) for leaf in scope.children)
    return isinstance(getattr(scope, "lhs", None), GrantedIds)


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
        condition = Q(**{f"{organization_field}__in": _organizations(actor, permission)})
        if getattr(self.model, "scope_shared_down", False) and permission.endswith(".view"):
            # shared down the tree: rows of the ancestors of every organization the actor sees
            ancestors = ancestor_ids(paths)
            if ancestors:
                condition |= Q(**{f"{organization_field}__in": ancestors})
        return condition

    def _grant_condition(self, actor: Actor, action: str) -> Q | None:
        """Explicit per-object grants (django-guardian, direct foreign-key tables): to the
        actor's user, and to organizations in which the actor holds the permission."""
        model = self.model
        codename = f"{action}_{model._meta.model_name}"
        sort_fields: Mapping[str, str] = getattr(model, "scope_grant_sort_fields", {})
        conditions: list[Q] = []
        user_grants: str | None = getattr(model, "scope_user_grant_model", None)
        if user_grants is not None and actor.user_id is not None:
            granted = apps.get_model(user_grants).objects.filter(
                user_id=actor.user_id, permission_id=self._permission_id(codename)
            )
            conditions.append(Q(GrantedIds(granted, sort_fields)))
        group_grants: str | None = getattr(model, "scope_group_grant_model", None)
        permission = permission_name(model, action)
        if group_grants is not None and actor.paths_for(permission):
            organization = apps.get_model("accounts", "Organization")
            auth_groups = organization.objects.filter(pk__in=_organizations(actor, permission))
            granted = apps.get_model(group_grants).objects.filter(
                group_id__in=auth_groups.values("auth_group_id"),
                permission_id=self._permission_id(codename),
            )
            conditions.append(Q(GrantedIds(granted, sort_fields)))
        return reduce(or_, conditions) if conditions else None

    def _permission_id(self, codename: str) -> Subquery:
        """The permission's id as a scalar subquery on the unique (content type, codename)
        index, an init plan: the grant subqueries then filter ``permission_id = $1`` and read
        their listing index in order (a join to ``auth_permission`` reads every grant of the
        user). The content type comes from Django's cache, as in guardian."""
        content_type = apps.get_model("contenttypes", "ContentType")
        permission = apps.get_model("auth", "Permission")
        found = permission.objects.filter(
            content_type=content_type.objects.db_manager(self.db).get_for_model(self.model),
            codename=codename,
        )
        return Subquery(found.order_by().values("pk"))


def _organizations(actor: Actor, permission: str) -> list[uuid.UUID] | models.QuerySet[Any]:
    """The organizations where ``permission`` holds: the actor's literal id list (up to
    LITERAL_IDS_LIMIT; with the values known the planner uses per-organization statistics, and
    plans faster), else the subquery of the subtrees."""
    known = actor.subtree_ids_for(permission)
    if known is not None and len(known) <= LITERAL_IDS_LIMIT:
        return known
    return organization_ids_under(actor.paths_for(permission))


class ScopedManager(models.Manager.from_queryset(ScopedQuerySet)):  # type: ignore[misc]
    pass
