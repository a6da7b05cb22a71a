"""REST endpoints of the fleet registry: devices (CRUD without delete, lifecycle transitions,
bulk transitions, transfer, claim codes, replacement, timeline), transfers and jobs.

Devices are never deleted (405): decommission them. Writes resolve their target through the
scoped base class (404 unseen, 403 seen without the permission), call one service in one
transaction and re-check that the result is still in the caller's scope.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import DateTimeField, QuerySet, Value
from django.db.models.functions import Coalesce
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.models import Organization
from apps.core.api.pagination import CursorPagination
from apps.core.api.viewsets import (
    ScopedCreateListRetrieveUpdateViewSet,
    ScopedViewSetMixin,
)
from apps.core.models import Job, JobItem
from apps.devices import access, lifecycle, replacement, selectors, services, transfers
from apps.devices.exports import selection_from_query
from apps.devices.models import Device, Transfer

from . import serializers as s
from .jobs import JobControlMixin

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
SORT_ORDERINGS = {
    "-id": ("-id",),
    "serial": ("serial", "id"),
    "-last_seen_at": ("-seen_key", "-id"),
}


class DevicePagination(CursorPagination):
    """Cursor pages ordered by ``sort`` (newest first by default)."""

    ordering = ("-id",)  # type: ignore[assignment]

    def get_ordering(self, request: Any, queryset: Any, view: Any) -> tuple[str, ...]:
        return SORT_ORDERINGS.get(request.query_params.get("sort", "-id"), ("-id",))


class ItemPagination(CursorPagination):
    ordering = ("id",)  # type: ignore[assignment]


def _device_selection(query: Any) -> dict[str, Any]:
    spec = selection_from_query(query)
    tags = [part for value in query.getlist("tags") for part in value.split(",") if part]
    if tags:
        spec["tags_all"] = tags
    return spec


@extend_schema_view(
    list=extend_schema(parameters=[s.DeviceQuerySerializer]),
    create=extend_schema(request=s.DeviceCreateSerializer, responses={201: s.DeviceSerializer}),
    partial_update=extend_schema(
        request=s.DeviceUpdateSerializer, responses={200: s.DeviceSerializer}
    ),
)
class DeviceViewSet(ScopedCreateListRetrieveUpdateViewSet):  # type: ignore[misc]
    """The fleet. Never deleted: decommission a device instead (DELETE answers 405)."""

    queryset = Device.objects.select_related("profile_version").defer(
        *selectors.PROFILE_VERSION_BULK
    )
    serializer_class = s.DeviceSerializer
    pagination_class = DevicePagination
    filter_backends = ()  # the selection language filters
    input_serializers = {
        "create": s.DeviceCreateSerializer,
        "partial_update": s.DeviceUpdateSerializer,
        "transition": s.TransitionSerializer,
        "bulk_transition": s.BulkTransitionSerializer,
        "transfer": s.TransferCreateSerializer,
        "claim": s.ClaimSerializer,
        "replace": s.ReplaceSerializer,
    }

    def get_queryset(self) -> QuerySet[Device]:
        if self.action != "list":
            return super().get_queryset()
        query = s.DeviceQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        devices = selectors.device_list(
            actor=self.actor, filters=_device_selection(self.request.query_params)
        )
        if query.validated_data["sort"] == "-last_seen_at":
            # never-seen devices sort last, without NULLs in the keyset comparison
            epoch = Value(EPOCH, output_field=DateTimeField())
            devices = devices.annotate(seen_key=Coalesce("last_seen_at", epoch))
        return devices

    def create_object(self, serializer: Any) -> Device:
        data = dict(serializer.validated_data)
        organization = self.organization_for(data.pop("organization"))
        return services.device_register(
            actor=self.actor,
            organization=organization,
            profile_version=self._version(data.pop("profile_version")),
            site=self._site(data.pop("site")),
            **data,
        )

    def update_object(self, serializer: Any) -> Device:
        fields = dict(serializer.validated_data)
        if "site" in fields:
            fields["site"] = self._site(fields["site"])
        return services.device_update(actor=self.actor, device=serializer.instance, **fields)

    def _version(self, version_id: Any) -> Any:
        from apps.profiles.models import ProfileVersion

        version = ProfileVersion.objects.for_actor(self.actor, "view").filter(pk=version_id).first()
        if version is None:
            raise ValidationError({"profile_version": "Unknown profile version."})
        return version

    def _site(self, site_id: Any) -> Organization | None:
        if site_id is None:
            return None
        site = Organization.objects.for_actor(self.actor, "view").filter(pk=site_id).first()
        if site is None:
            raise ValidationError({"site": "Unknown organization."})
        return site

    @extend_schema(
        summary="Move a device along a lifecycle transition",
        request=s.TransitionSerializer,
        responses={200: s.DeviceSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="transition")
    def transition(self, request: Request, pk: Any = None) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        spec = lifecycle.get(serializer.validated_data["transition"])
        if not self.actor.has_any(spec.permission):  # held nowhere: 403 whatever the id
            raise exceptions.PermissionDenied()
        device = self.get_object()
        if spec.action != "transition":
            self.require(device, spec.action)
        with transaction.atomic():
            device = services.device_transition(
                actor=self.actor,
                device=device,
                transition=spec.name,
                reason=serializer.validated_data["reason"],
            )
            self.ensure_in_scope(device)
        return self.render(self.get_queryset().get(pk=device.pk))

    @extend_schema(
        summary="Move a selection of devices along a transition, as one background job",
        request=s.BulkTransitionSerializer,
        responses={202: s.JobSerializer},
    )
    @action(detail=False, methods=["post"], url_path="bulk-transition", scope_action="transition")
    def bulk_transition(self, request: Request) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        spec = lifecycle.get(data["transition"])
        organization = self.organization_for(data["organization"], spec.action)
        job = services.device_bulk_transition(
            actor=self.actor,
            organization=organization,
            selection=data["filter"],
            transition=spec.name,
        )
        return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        summary="Offer an escrow device to an organization below its manufacturer",
        request=s.TransferCreateSerializer,
        responses={201: s.TransferSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="transfer")
    def transfer(self, request: Request, pk: Any = None) -> Response:
        device = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        receiver = Organization.objects.filter(pk=data["to_organization"]).first()
        if receiver is None:
            raise ValidationError(
                {"to_organization": "Must be an organization below the device's manufacturer."}
            )
        created = transfers.transfer_create(
            actor=self.actor, device=device, to_organization=receiver, note=data["note"]
        )
        return Response(s.TransferSerializer(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Issue a new claim code for an escrow device (shown once)",
        request=None,
        responses={201: s.ClaimCodeSerializer},
    )
    @action(detail=True, methods=["post"], url_path="claim-code", scope_action="transfer")
    def claim_code(self, request: Request, pk: Any = None) -> Response:
        device = self.get_object()
        code = transfers.device_set_claim_code(actor=self.actor, device=device)
        return Response({"id": str(device.pk), "claim_code": code}, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Claim an escrow device with the code printed on it",
        request=s.ClaimSerializer,
        responses={200: s.DeviceSerializer},
    )
    @action(detail=False, methods=["post"], scope_action="transfer")
    def claim(self, request: Request) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        organization = self.organization_for(data["organization"], "transfer")
        device = transfers.device_claim(
            actor=self.actor,
            organization=organization,
            serial=data["serial"],
            manufacturer_id=data["manufacturer"],
            claim_code=data["claim_code"],
        )
        return self.render(self.get_queryset().get(pk=device.pk))

    @extend_schema(
        summary="Replace a device with a successor that takes over its identity",
        request=s.ReplaceSerializer,
        responses={200: s.DeviceSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="transition")
    def replace(self, request: Request, pk: Any = None) -> Response:
        old = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        successor_id = serializer.validated_data["successor"]
        new = Device.objects.for_actor(self.actor, "transition").filter(pk=successor_id).first()
        if new is None:
            raise ValidationError({"successor": "Unknown device."})
        with transaction.atomic():
            new = replacement.device_replace(actor=self.actor, old=old, new=new)
            self.ensure_in_scope(new)
        return self.render(self.get_queryset().get(pk=new.pk))

    @extend_schema(
        summary="Everything that happened to a device and its replacement chain, newest first",
        parameters=[s.TimelineQuerySerializer],
        responses={200: s.TimelineSerializer},
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def timeline(self, request: Request, pk: Any = None) -> Response:
        device = self.get_object()
        query = s.TimelineQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        entries = selectors.device_timeline(
            actor=self.actor,
            device=device,
            before=data.get("before"),
            before_id=data.get("before_id"),
            limit=data["limit"],
        )
        last = entries[-1] if len(entries) == data["limit"] else None
        page = {
            "results": entries,
            "next_before": last.time if last else None,
            "next_before_id": last.id if last else None,
        }
        return Response(s.TimelineSerializer(page).data)


@extend_schema_view(list=extend_schema(parameters=[s.TransferQuerySerializer]))
class TransferViewSet(ScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):  # type: ignore[misc]
    """Transfers sent from or offered to the caller's organizations."""

    queryset = Transfer.objects.all()
    serializer_class = s.TransferSerializer
    filter_backends = ()

    def get_queryset(self) -> QuerySet[Transfer]:
        query = s.TransferQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        transfers = selectors.transfer_list(
            actor=self.actor, direction=query.validated_data.get("direction", "")
        )
        if "status" in query.validated_data:
            transfers = transfers.filter(status=query.validated_data["status"])
        return transfers

    def _decide(self, pk: Any, side: str, decide: Any) -> Response:
        transfer = access.access_transfer(actor=self.actor, transfer_id=pk, side=side)
        transfer = decide(actor=self.actor, transfer=transfer)
        return self.render(transfer)

    @extend_schema(
        summary="Accept a transfer (the receiver)",
        request=None,
        responses={200: s.TransferSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="transfer")
    def accept(self, request: Request, pk: Any = None) -> Response:
        return self._decide(pk, "to", transfers.transfer_accept)

    @extend_schema(
        summary="Reject a transfer (the receiver)",
        request=None,
        responses={200: s.TransferSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="transfer")
    def reject(self, request: Request, pk: Any = None) -> Response:
        return self._decide(pk, "to", transfers.transfer_reject)

    @extend_schema(
        summary="Cancel a transfer (the sender)",
        request=None,
        responses={200: s.TransferSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="transfer")
    def cancel(self, request: Request, pk: Any = None) -> Response:
        return self._decide(pk, "from", transfers.transfer_cancel)


@extend_schema_view(items=extend_schema(parameters=[s.JobItemQuerySerializer]))
class JobViewSet(JobControlMixin, ScopedViewSetMixin, viewsets.ReadOnlyModelViewSet):  # type: ignore[misc]
    """Long operations (bulk transitions, imports): status, progress, per-item results, log
    lines and cancel."""

    queryset = Job.objects.all()
    serializer_class = s.JobSerializer
    filter_backends = ()

    @extend_schema(
        summary="Per-item results of a job (``ok=false`` for the failures)",
        responses={200: s.JobItemSerializer(many=True)},
    )
    @action(
        detail=True,
        methods=["get"],
        pagination_class=ItemPagination,
        serializer_class=s.JobItemSerializer,
    )
    def items(self, request: Request, pk: Any = None) -> Response:
        job = self.get_object()
        query = s.JobItemQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows: QuerySet[JobItem] = selectors.job_items(job=job, ok=query.validated_data["ok"])
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(s.JobItemSerializer(page, many=True).data)
