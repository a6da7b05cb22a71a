"""REST endpoints for device groups: CRUD, members, static membership changes and sharing.

A user a group was shared with (django-guardian grant) reaches it here even when their role
holds ``devicegroup.view`` nowhere; ``GET /groups/{id}/devices/`` is then the only place where
the group's member devices outside their own scope are visible (read-only).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.models import Organization, User
from apps.core.api.pagination import CursorPagination
from apps.core.api.viewsets import (
    ScopedCreateMixin,
    ScopedPartialUpdateMixin,
    ScopedViewSetMixin,
)
from apps.devices import groups
from apps.devices.choices import GroupKind
from apps.devices.models import Device, DeviceGroup, DeviceGroupUserObjectPermission

# --- serializers -------------------------------------------------------------------------------


class GroupSerializer(serializers.ModelSerializer[DeviceGroup]):
    class Meta:
        model = DeviceGroup
        fields = [
            "id",
            "organization",
            "name",
            "description",
            "kind",
            "filter",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class GroupCreateSerializer(serializers.Serializer[Any]):
    organization = serializers.UUIDField()
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(choices=GroupKind.choices, default=GroupKind.STATIC)
    filter = serializers.JSONField(required=False, default=dict)


class GroupUpdateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    filter = serializers.JSONField(required=False)


class MemberSerializer(serializers.ModelSerializer[Device]):
    class Meta:
        model = Device
        fields = [
            "id",
            "organization",
            "serial",
            "name",
            "state",
            "connectivity",
            "firmware_version",
            "tags",
            "last_seen_at",
        ]
        read_only_fields = fields


class DeviceIdsSerializer(serializers.Serializer[Any]):
    devices = serializers.ListField(
        child=serializers.UUIDField(), allow_empty=False, max_length=groups.MAX_DEVICES_PER_CALL
    )


class AddedSerializer(serializers.Serializer[Any]):
    added = serializers.IntegerField()
    rejected = serializers.ListField(child=serializers.UUIDField())


class RemovedSerializer(serializers.Serializer[Any]):
    removed = serializers.IntegerField()
    rejected = serializers.ListField(child=serializers.UUIDField())


class ShareTargetSerializer(serializers.Serializer[Any]):
    user = serializers.EmailField(required=False)
    organization = serializers.UUIDField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("user" in attrs) == ("organization" in attrs):
            raise serializers.ValidationError("Give either a user (email) or an organization.")
        return attrs


class ShareSerializer(ShareTargetSerializer):
    permission = serializers.ChoiceField(choices=list(groups.SHARE_PERMISSIONS), default="view")


class ShareOutSerializer(serializers.Serializer[Any]):
    user = serializers.SerializerMethodField()
    organization = serializers.SerializerMethodField()
    permissions = serializers.ListField(child=serializers.CharField())

    def get_user(self, share: groups.Share) -> dict[str, str] | None:
        user = share.user
        return {"id": str(user.pk), "email": user.email} if user is not None else None

    def get_organization(self, share: groups.Share) -> dict[str, str] | None:
        org = share.organization
        return {"id": str(org.pk), "name": org.name} if org is not None else None


class UnsharedSerializer(serializers.Serializer[Any]):
    removed = serializers.IntegerField()


class MemberPagination(CursorPagination):
    ordering = ("-id",)  # type: ignore[assignment]  # uuid7 ids are time-ordered


# --- the viewset -------------------------------------------------------------------------------


@extend_schema_view(
    create=extend_schema(request=GroupCreateSerializer, responses={201: GroupSerializer}),
    partial_update=extend_schema(request=GroupUpdateSerializer, responses={200: GroupSerializer}),
)
class DeviceGroupViewSet(  # type: ignore[misc]
    ScopedViewSetMixin,
    ScopedCreateMixin,
    ScopedPartialUpdateMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Static and dynamic device groups; ``?organization=`` and ``?kind=`` narrow the list."""

    queryset = DeviceGroup.objects.all()
    serializer_class = GroupSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filterset_fields = ["organization", "kind"]
    input_serializers = {
        "create": GroupCreateSerializer,
        "partial_update": GroupUpdateSerializer,
        "add_devices": DeviceIdsSerializer,
        "remove_devices": DeviceIdsSerializer,
        "share": ShareSerializer,
        "unshare": ShareTargetSerializer,
    }

    def get_queryset(self) -> QuerySet[DeviceGroup]:
        visible = groups.group_list(actor=self.actor)
        if self.action == "list":  # the page renders organization ids only: no join to sort
            return visible.select_related(None)
        return visible

    def _may_attempt(self) -> bool:
        """Role gate as everywhere; besides, a user holding a direct grant on some group."""
        actor = self.actor
        if actor.has_any(self.permission("view")) and actor.has_any(self.permission()):
            return True
        return (
            actor.user_id is not None
            and DeviceGroupUserObjectPermission.objects.filter(user_id=actor.user_id).exists()
        )

    def create_object(self, serializer: Any) -> DeviceGroup:
        data = serializer.validated_data
        return groups.group_create(
            actor=self.actor,
            organization=self.organization_for(data["organization"]),
            name=data["name"],
            description=data["description"],
            kind=data["kind"],
            filter=data["filter"],
        )

    def update_object(self, serializer: Any) -> DeviceGroup:
        return groups.group_update(
            actor=self.actor, group=serializer.instance, **serializer.validated_data
        )

    def destroy_object(self, instance: DeviceGroup) -> None:
        groups.group_delete(actor=self.actor, group=instance)

    @extend_schema(
        summary="The group's current members (cursor-paginated)",
        request=None,
        responses={200: MemberSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], pagination_class=MemberPagination, filter_backends=[])
    def devices(self, request: Request, pk: Any = None) -> Response:
        group = self.get_object()
        members = groups.group_members(actor=self.actor, group=group)
        page = self.paginate_queryset(members)
        return self.get_paginated_response(MemberSerializer(page, many=True).data)

    def _device_ids(self, request: Request) -> list[Any]:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return list(serializer.validated_data["devices"])

    @extend_schema(
        summary="Add devices to a static group",
        request=DeviceIdsSerializer,
        responses={200: AddedSerializer},
    )
    @action(detail=True, methods=["post"], url_path="add-devices", scope_action="change")
    def add_devices(self, request: Request, pk: Any = None) -> Response:
        group = self.get_object()
        change = groups.group_add_devices(
            actor=self.actor, group=group, device_ids=self._device_ids(request)
        )
        return Response(AddedSerializer({"added": change.count, "rejected": change.rejected}).data)

    @extend_schema(
        summary="Remove devices from a static group",
        request=DeviceIdsSerializer,
        responses={200: RemovedSerializer},
    )
    @action(detail=True, methods=["post"], url_path="remove-devices", scope_action="change")
    def remove_devices(self, request: Request, pk: Any = None) -> Response:
        group = self.get_object()
        change = groups.group_remove_devices(
            actor=self.actor, group=group, device_ids=self._device_ids(request)
        )
        data = {"removed": change.count, "rejected": change.rejected}
        return Response(RemovedSerializer(data).data)

    def _target(self, data: dict[str, Any]) -> dict[str, Any]:
        if "user" in data:
            user = User.objects.filter(email__iexact=data["user"], is_active=True).first()
            if user is None:
                raise exceptions.ValidationError({"user": ["No active user has this email."]})
            return {"user": user}
        organization = Organization.objects.filter(pk=data["organization"], is_active=True).first()
        if organization is None:
            raise exceptions.ValidationError({"organization": ["No such organization."]})
        return {"organization": organization}

    @extend_schema(
        summary="Share the group with a user or an organization",
        request=ShareSerializer,
        responses={200: ShareOutSerializer(many=True)},
    )
    @action(detail=True, methods=["post"], scope_action="share")
    def share(self, request: Request, pk: Any = None) -> Response:
        group = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        with transaction.atomic():
            groups.group_share(
                actor=self.actor, group=group, permission=data["permission"], **self._target(data)
            )
        return Response(ShareOutSerializer(groups.group_shares(group=group), many=True).data)

    @extend_schema(
        summary="Withdraw every grant a user or an organization holds on the group",
        request=ShareTargetSerializer,
        responses={200: UnsharedSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="share")
    def unshare(self, request: Request, pk: Any = None) -> Response:
        group = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        removed = groups.group_unshare(
            actor=self.actor, group=group, **self._target(serializer.validated_data)
        )
        return Response(UnsharedSerializer({"removed": removed}).data)

    @extend_schema(
        summary="Who the group is shared with",
        request=None,
        responses={200: ShareOutSerializer(many=True)},
    )
    @action(
        detail=True,
        methods=["get"],
        scope_action="share",
        pagination_class=None,
        filter_backends=[],
    )
    def shares(self, request: Request, pk: Any = None) -> Response:
        group = self.get_object()
        return Response(ShareOutSerializer(groups.group_shares(group=group), many=True).data)
