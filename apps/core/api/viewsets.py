"""API base classes: every viewset is scoped through ``for_actor``.

HTTP methods map to actions (GET -> view, POST -> add, PUT/PATCH -> change, DELETE -> delete);
custom ``@action`` endpoints name theirs with ``scope_action=``. An actor who holds the view
permission or the action's permission nowhere gets 403 whatever the id (nothing leaks). Objects
outside the actor's view scope are 404; visible objects the actor may not act on are 403. Writes
run in one transaction and re-check, before commit, that the result is still inside the actor's
scope.

Write endpoints validate with an input serializer (``input_serializers[action]``) and answer
with the read serializer (``serializer_class``) through ``render()``.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.apps import apps
from django.db import models, transaction
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.actors import Actor
from apps.core.scoping import permission_name

METHOD_ACTIONS = {
    "list": "view",
    "retrieve": "view",
    "create": "add",
    "update": "change",
    "partial_update": "change",
    "destroy": "delete",
}


def request_actor(request: Request) -> Actor:
    """The actor the authentication classes resolved; 401 when there is none."""
    actor = getattr(request, "auth", None)
    if not isinstance(actor, Actor):
        raise exceptions.NotAuthenticated()
    return actor


def parse_uuid(value: Any) -> uuid.UUID:
    """A malformed id is simply not found (404), never a 500 or a 400."""
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError, AttributeError):
        raise exceptions.NotFound() from None


class ScopedViewSetMixin:
    """Scoping, permission and after-write checks shared by every API viewset."""

    scope_action: str | None = None  # set on custom @action endpoints
    input_serializers: dict[str, Any] = {}  # action -> input serializer class
    request: Request
    action: str | None
    kwargs: dict[str, Any]
    lookup_field = "pk"

    @property
    def actor(self) -> Actor:
        return request_actor(self.request)

    @property
    def model(self) -> type[models.Model]:
        return self.queryset.model  # type: ignore[attr-defined, no-any-return]

    def action_name(self) -> str:
        return self.scope_action or METHOD_ACTIONS.get(self.action or "", "view")

    def permission(self, action: str | None = None) -> str:
        return permission_name(self.model, action or self.action_name())

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        if not self._may_attempt():  # holds the permission nowhere: 403 whatever the id
            raise exceptions.PermissionDenied()
        if self.lookup_field in kwargs:
            kwargs[self.lookup_field] = parse_uuid(kwargs[self.lookup_field])
            self.kwargs[self.lookup_field] = kwargs[self.lookup_field]

    def _may_attempt(self) -> bool:
        actor = self.actor
        if actor.has_any(self.permission("view")) and actor.has_any(self.permission()):
            return True
        # users holding explicit per-object grants may reach what was shared with them
        return getattr(self.model, "scope_user_grant_model", None) is not None and (
            actor.user_id is not None
        )

    def get_serializer_class(self) -> Any:
        return self.input_serializers.get(self.action or "") or super().get_serializer_class()  # type: ignore[misc]

    def render(self, instance: Any, status_code: int = status.HTTP_200_OK) -> Response:
        """Answer with the read serializer, whatever the input serializer was."""
        serializer = self.serializer_class(  # type: ignore[attr-defined]
            instance,
            context=self.get_serializer_context(),  # type: ignore[attr-defined]
        )
        return Response(serializer.data, status=status_code)

    def get_queryset(self) -> models.QuerySet[Any]:
        base = super().get_queryset()  # type: ignore[misc]
        return base.for_actor(self.actor, "view")  # type: ignore[no-any-return]

    def get_object(self) -> Any:
        obj = super().get_object()  # type: ignore[misc]  # 404 outside the view scope
        action = self.action_name()
        if action != "view":
            self.require(obj, action)
        return obj

    def require(self, obj: models.Model, action: str) -> None:
        """403 unless ``actor`` may ``action`` this (already visible) object."""
        allowed = type(obj)._default_manager.for_actor(self.actor, action)  # type: ignore[attr-defined]
        if not allowed.filter(pk=obj.pk).exists():
            raise exceptions.PermissionDenied()

    def organization_for(self, organization_id: Any, action: str | None = None) -> Any:
        """The organization the actor may ``action`` this model in: 404 if unseen, 403 if not."""
        organization_model = apps.get_model("accounts", "Organization")
        organization = (
            organization_model.objects.for_actor(self.actor, "view")
            .filter(pk=parse_uuid(organization_id))
            .first()
        )
        if organization is None:
            raise exceptions.NotFound()
        permission = self.permission(action or self.action_name())
        if not self.actor.has_perm(permission, organization.path):
            raise exceptions.PermissionDenied()
        return organization

    def ensure_in_scope(self, obj: models.Model) -> None:
        """Re-check after a write, inside the transaction: a write may not leave the scope."""
        visible = type(obj)._default_manager.for_actor(self.actor, "view")  # type: ignore[attr-defined]
        if not visible.filter(pk=obj.pk).exists():
            raise exceptions.NotFound()

    def perform_create(self, serializer: Any) -> None:
        with transaction.atomic():
            instance = self.create_object(serializer)
            self.ensure_in_scope(instance)
        serializer.instance = instance

    def perform_update(self, serializer: Any) -> None:
        with transaction.atomic():
            instance = self.update_object(serializer)
            self.ensure_in_scope(instance)
        serializer.instance = instance

    def perform_destroy(self, instance: Any) -> None:
        with transaction.atomic():
            self.destroy_object(instance)

    # Subclasses call their app's services here.
    def create_object(self, serializer: Any) -> Any:
        raise exceptions.MethodNotAllowed(self.request.method or "POST")

    def update_object(self, serializer: Any) -> Any:
        raise exceptions.MethodNotAllowed(self.request.method or "PUT")

    def destroy_object(self, instance: Any) -> None:
        raise exceptions.MethodNotAllowed(self.request.method or "DELETE")


class ScopedCreateMixin:
    """POST: validate the input serializer, ``create_object`` in one transaction, render."""

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)  # type: ignore[attr-defined]
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)  # type: ignore[attr-defined]
        return self.render(serializer.instance, status.HTTP_201_CREATED)  # type: ignore[attr-defined, no-any-return]


class ScopedPartialUpdateMixin:
    """PATCH only (no PUT): validate the input serializer, ``update_object``, render."""

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        instance = self.get_object()  # type: ignore[attr-defined]
        serializer = self.get_serializer(instance, data=request.data, partial=True)  # type: ignore[attr-defined]
        serializer.is_valid(raise_exception=True)
        self.perform_update(serializer)  # type: ignore[attr-defined]
        return self.render(serializer.instance)  # type: ignore[attr-defined, no-any-return]


class ScopedCreateListRetrieveUpdateViewSet(  # type: ignore[misc]
    ScopedViewSetMixin,
    ScopedCreateMixin,
    ScopedPartialUpdateMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """List, retrieve, create and PATCH (no PUT, no DELETE), all scoped."""


class ScopedModelViewSet(ScopedViewSetMixin, viewsets.ModelViewSet):  # type: ignore[misc]
    pass


class ScopedReadOnlyViewSet(ScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):  # type: ignore[misc]
    pass


class ScopedCreateReadDestroyViewSet(  # type: ignore[misc]
    ScopedViewSetMixin,
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    mixins.ListModelMixin,
    viewsets.GenericViewSet,
):
    pass
