"""REST endpoints for organizations, memberships, invitations and API keys.

Every write resolves the organization it targets through ``organization_for`` (404 when unseen,
403 when seen without the permission), calls one service in the base class's transaction and
re-checks the result is still in the caller's scope.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import selectors, services
from apps.accounts.models import APIKey, Invitation, Membership, Organization, User
from apps.core.api.viewsets import (
    ScopedCreateListRetrieveUpdateViewSet,
    ScopedCreateMixin,
    ScopedPartialUpdateMixin,
    ScopedViewSetMixin,
    request_actor,
)

from . import serializers as s
from .filters import APIKeyFilter, InvitationFilter, MembershipFilter, OrganizationFilter


def _created_by(request: Request) -> User | None:
    """The signed-in person, or None for an API key."""
    user = request.user
    return user if isinstance(user, User) else None


@extend_schema_view(
    create=extend_schema(
        request=s.OrganizationCreateSerializer, responses={201: s.OrganizationSerializer}
    ),
    partial_update=extend_schema(
        request=s.OrganizationUpdateSerializer, responses={200: s.OrganizationSerializer}
    ),
)
class OrganizationViewSet(ScopedCreateListRetrieveUpdateViewSet):  # type: ignore[misc]
    """The organization tree below the caller's memberships. Never hard-deleted."""

    queryset = Organization.objects.all()
    serializer_class = s.OrganizationSerializer
    filterset_class = OrganizationFilter
    input_serializers = {
        "create": s.OrganizationCreateSerializer,
        "partial_update": s.OrganizationUpdateSerializer,
        "move": s.OrganizationMoveSerializer,
    }

    def get_queryset(self) -> QuerySet[Organization]:
        return selectors.organization_list(actor=self.actor)

    def create_object(self, serializer: Any) -> Organization:
        data = serializer.validated_data
        if data["parent"] is None:
            if not self.actor.is_platform_staff:
                raise exceptions.PermissionDenied(
                    "Only platform staff may create a top-level organization."
                )
            parent = None
        else:
            parent = self.organization_for(data["parent"])
        return services.organization_create(
            actor=self.actor,
            name=data["name"],
            parent=parent,
            kind=data["kind"],
            slug=data["slug"],
            require_mfa=data["require_mfa"],
        )

    def update_object(self, serializer: Any) -> Organization:
        organization: Organization = serializer.instance
        fields = dict(serializer.validated_data)
        if fields.get("is_active", organization.is_active) != organization.is_active:
            self.require(organization, "delete")
        return services.organization_update(actor=self.actor, organization=organization, **fields)

    @extend_schema(
        summary="Move an organization (and its subtree) under another parent",
        request=s.OrganizationMoveSerializer,
        responses={200: s.OrganizationSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="move")
    def move(self, request: Request, pk: Any = None) -> Response:
        organization = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            new_parent = self.organization_for(serializer.validated_data["parent"], "move")
            organization = services.organization_move(
                actor=self.actor, organization=organization, new_parent=new_parent
            )
            self.ensure_in_scope(organization)
        return self.render(organization)


@extend_schema_view(
    create=extend_schema(
        request=s.MembershipCreateSerializer, responses={201: s.MembershipSerializer}
    ),
    partial_update=extend_schema(
        request=s.MembershipUpdateSerializer, responses={200: s.MembershipSerializer}
    ),
)
class MembershipViewSet(  # type: ignore[misc]
    ScopedViewSetMixin,
    ScopedCreateMixin,
    ScopedPartialUpdateMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Who holds which role where. A role holds on the organization's whole subtree."""

    queryset = Membership.objects.all()
    serializer_class = s.MembershipSerializer
    filterset_class = MembershipFilter
    input_serializers = {
        "create": s.MembershipCreateSerializer,
        "partial_update": s.MembershipUpdateSerializer,
    }

    def get_queryset(self) -> QuerySet[Membership]:
        return selectors.membership_list(actor=self.actor)

    def create_object(self, serializer: Any) -> Membership:
        data = serializer.validated_data
        organization = self.organization_for(data["organization"])
        user = User.objects.filter(email__iexact=data["email"], is_active=True).first()
        if user is None:
            raise exceptions.ValidationError(
                {"email": ["No active user has this email address: send an invitation."]}
            )
        return services.membership_create(
            actor=self.actor, organization=organization, user=user, role=data["role"]
        )

    def update_object(self, serializer: Any) -> Membership:
        return services.membership_change_role(
            actor=self.actor, membership=serializer.instance, role=serializer.validated_data["role"]
        )

    def destroy_object(self, instance: Membership) -> None:
        services.membership_delete(actor=self.actor, membership=instance)


@extend_schema_view(
    create=extend_schema(
        request=s.InvitationCreateSerializer, responses={201: s.InvitationSerializer}
    ),
)
class InvitationViewSet(  # type: ignore[misc]
    ScopedViewSetMixin,
    ScopedCreateMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Invitations by email. The one-time token is only ever emailed, never returned."""

    queryset = Invitation.objects.all()
    serializer_class = s.InvitationSerializer
    filterset_class = InvitationFilter
    input_serializers = {"create": s.InvitationCreateSerializer}

    def get_queryset(self) -> QuerySet[Invitation]:
        return selectors.invitation_list(actor=self.actor)

    def create_object(self, serializer: Any) -> Invitation:
        data = serializer.validated_data
        issued = services.invitation_create(
            actor=self.actor,
            organization=self.organization_for(data["organization"]),
            email=data["email"],
            role=data["role"],
            invited_by=_created_by(self.request),
        )
        return issued.invitation

    @extend_schema(
        summary="Revoke a pending invitation",
        request=None,
        responses={200: s.InvitationSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="delete")
    def revoke(self, request: Request, pk: Any = None) -> Response:
        invitation = self.get_object()
        with transaction.atomic():
            invitation = services.invitation_revoke(actor=self.actor, invitation=invitation)
            self.ensure_in_scope(invitation)
        return self.render(invitation)


class InvitationAcceptView(APIView):
    """The signed-in person accepts an invitation sent to their email address.

    An API key is not a person and cannot join an organization (403).
    """

    @extend_schema(
        summary="Accept an invitation as the signed-in user",
        request=s.InvitationAcceptSerializer,
        responses={200: s.MembershipSerializer},
    )
    def post(self, request: Request) -> Response:
        actor = request_actor(request)
        user = _created_by(request)
        if user is None or actor.user_id is None:
            raise exceptions.PermissionDenied("Only a signed-in person can accept an invitation.")
        serializer = s.InvitationAcceptSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        membership = services.invitation_accept(
            actor=actor, user=user, token=serializer.validated_data["token"]
        )
        return Response(s.MembershipSerializer(membership).data, status=status.HTTP_200_OK)


@extend_schema_view(
    create=extend_schema(
        request=s.APIKeyCreateSerializer, responses={201: s.APIKeyCreatedSerializer}
    ),
    destroy=extend_schema(summary="Revoke an API key (the row is kept for the audit trail)"),
)
class APIKeyViewSet(  # type: ignore[misc]
    ScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Machine credentials. The token is in the create response only; DELETE revokes."""

    queryset = APIKey.objects.all()
    serializer_class = s.APIKeySerializer
    filterset_class = APIKeyFilter
    input_serializers = {"create": s.APIKeyCreateSerializer}

    def get_queryset(self) -> QuerySet[APIKey]:
        return selectors.api_key_list(actor=self.actor)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with transaction.atomic():
            issued = services.api_key_create(
                actor=self.actor,
                organization=self.organization_for(data["organization"]),
                name=data["name"],
                role=data["role"],
                permissions=data["permissions"],
                expires_at=data["expires_at"],
                created_by=_created_by(request),
            )
            self.ensure_in_scope(issued.api_key)
        api_key = issued.api_key
        api_key.token = issued.token  # type: ignore[attr-defined]  # shown this once
        created = s.APIKeyCreatedSerializer(api_key, context=self.get_serializer_context())
        return Response(created.data, status=status.HTTP_201_CREATED)

    def destroy_object(self, instance: APIKey) -> None:
        services.api_key_revoke(actor=self.actor, api_key=instance)

    @extend_schema(summary="Revoke an API key", request=None, responses={200: s.APIKeySerializer})
    @action(detail=True, methods=["post"], scope_action="delete")
    def revoke(self, request: Request, pk: Any = None) -> Response:
        api_key = self.get_object()
        with transaction.atomic():
            api_key = services.api_key_revoke(actor=self.actor, api_key=api_key)
            self.ensure_in_scope(api_key)
        return self.render(api_key)
