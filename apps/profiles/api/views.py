"""REST endpoints of the device catalog.

Profiles shared down the tree are visible (view) to the organizations below their owner; any
write needs the profile permission on the owner itself, so a customer gets 403 on a
manufacturer's profile (visible, not writable) and a sibling gets 404.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.pagination import CursorPagination
from apps.core.api.viewsets import (
    ScopedCreateListRetrieveUpdateViewSet,
    ScopedViewSetMixin,
)
from apps.profiles import selectors, services
from apps.profiles.models import DeviceProfile, ProfileVersion

from . import serializers as s
from .filters import ProfileFilter


class VersionPagination(CursorPagination):
    ordering = ("-number", "-id")


@extend_schema_view(
    create=extend_schema(request=s.ProfileCreateSerializer, responses={201: s.ProfileSerializer}),
    partial_update=extend_schema(
        summary="Change a profile (a version in use is never edited: this makes the next one)",
        request=s.ProfileUpdateSerializer,
        responses={200: s.ProfileSerializer},
    ),
)
class ProfileViewSet(ScopedCreateListRetrieveUpdateViewSet):  # type: ignore[misc]
    """Device profiles: own ones and those shared down by the organizations above."""

    queryset = DeviceProfile.objects.all()
    serializer_class = s.ProfileSerializer
    filterset_class = ProfileFilter
    input_serializers = {
        "create": s.ProfileCreateSerializer,
        "partial_update": s.ProfileUpdateSerializer,
    }

    def get_queryset(self) -> QuerySet[DeviceProfile]:
        return selectors.profile_list(actor=self.actor)

    def create_object(self, serializer: Any) -> DeviceProfile:
        data = dict(serializer.validated_data)
        organization = self.organization_for(data.pop("organization"))
        return services.profile_create(actor=self.actor, organization=organization, **data)

    def update_object(self, serializer: Any) -> DeviceProfile:
        profile: DeviceProfile = serializer.instance
        services.profile_update(actor=self.actor, profile=profile, **serializer.validated_data)
        return DeviceProfile.objects.get(pk=profile.pk)

    @extend_schema(
        summary="The versions of a profile, newest first",
        responses={200: s.ProfileVersionSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], scope_action="view", pagination_class=VersionPagination)
    def versions(self, request: Request, pk: Any = None) -> Response:
        profile = self.get_object()
        versions = selectors.version_list(actor=self.actor, profile=profile)
        page = self.paginate_queryset(versions)
        data = s.ProfileVersionSerializer(page, many=True).data
        return self.get_paginated_response(data)


class ProfileVersionViewSet(  # type: ignore[misc]
    ScopedViewSetMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """One version of a profile; moving devices to it is an explicit, audited action."""

    queryset = ProfileVersion.objects.select_related("profile")
    serializer_class = s.ProfileVersionSerializer
    input_serializers = {"upgrade_devices": s.UpgradeDevicesSerializer}

    @extend_schema(
        summary="Move devices of this profile to this version",
        description="Devices of the same profile that the caller may change (device.change), "
        "named by id or chosen by a fleet filter, move in one set-based update.",
        request=s.UpgradeDevicesSerializer,
        responses={200: s.UpgradeResultSerializer},
    )
    @action(detail=True, methods=["post"], url_path="upgrade-devices", scope_action="view")
    def upgrade_devices(self, request: Request, pk: Any = None) -> Response:
        if not self.actor.has_any("device.change"):
            raise exceptions.PermissionDenied()
        version = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with transaction.atomic():
            upgraded = services.profile_upgrade_devices(
                actor=self.actor,
                version=version,
                device_ids=data.get("devices"),
                selection=data.get("filter"),
            )
        return Response(s.UpgradeResultSerializer({"upgraded": upgraded}).data)
