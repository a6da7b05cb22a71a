"""REST endpoints of change requests and approval policies.

``/change-requests/``: list (``?status=``, ``?kind=``), create, retrieve, PATCH (a new
revision voids approvals), and the actions ``preview`` (dry run, anyone who may view),
``approvals`` (listed), ``approve`` / ``reject`` (``changerequest.approve``, never the creator,
bound to the hash the approver saw), ``execute`` (``changerequest.execute``) and ``cancel``
(``changerequest.change``). A state that forbids the action is 409 with a machine-readable
code. ``/approval-policies/``: CRUD, every write needs ``changerequest.change``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.changes import execution, policy_services, selectors, services
from apps.changes.models import ApprovalPolicy, ChangeRequest
from apps.core.api.pagination import CursorPagination
from apps.core.api.viewsets import ScopedCreateListRetrieveUpdateViewSet, ScopedModelViewSet

from .serializers import (
    ApprovalPolicySerializer,
    ApprovalSerializer,
    ChangePreviewQuerySerializer,
    ChangePreviewSerializer,
    ChangeRequestCreateSerializer,
    ChangeRequestQuerySerializer,
    ChangeRequestSerializer,
    ChangeRequestUpdateSerializer,
    DecisionSerializer,
)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


@contextmanager
def refusals() -> Iterator[None]:
    """A service's ``Refused`` becomes 409 with its code and message."""
    try:
        yield
    except services.Refused as refused:
        raise Conflict(refused.message, refused.code) from None


@extend_schema_view(
    list=extend_schema(parameters=[ChangeRequestQuerySerializer]),
    create=extend_schema(
        request=ChangeRequestCreateSerializer, responses={201: ChangeRequestSerializer}
    ),
    partial_update=extend_schema(
        request=ChangeRequestUpdateSerializer, responses={200: ChangeRequestSerializer}
    ),
)
class ChangeRequestViewSet(ScopedCreateListRetrieveUpdateViewSet):
    """Change requests: what will run, on which devices, when, and who approved it."""

    queryset = ChangeRequest.objects.all()
    serializer_class = ChangeRequestSerializer
    pagination_class = CursorPagination
    filter_backends = ()  # the selector applies the filters
    http_method_names = ["get", "post", "patch", "head", "options"]
    input_serializers = {
        "create": ChangeRequestCreateSerializer,
        "partial_update": ChangeRequestUpdateSerializer,
        "approve": DecisionSerializer,
        "reject": DecisionSerializer,
    }

    def get_queryset(self) -> QuerySet[ChangeRequest]:
        if self.action != "list":
            return super().get_queryset().select_related("organization")
        query = ChangeRequestQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return selectors.change_request_list(
            actor=self.actor,
            status=query.validated_data.get("status", ""),
            kind=query.validated_data.get("kind", ""),
        )

    def create_object(self, serializer: Any) -> ChangeRequest:
        data = dict(serializer.validated_data)
        organization = self.organization_for(data.pop("organization"))
        return services.change_request_create(actor=self.actor, organization=organization, **data)

    def update_object(self, serializer: Any) -> ChangeRequest:
        with refusals():
            return services.change_request_update(
                actor=self.actor, request=serializer.instance, **serializer.validated_data
            )

    @extend_schema(
        summary="Dry run: the devices it resolves to and what would change on each",
        parameters=[ChangePreviewQuerySerializer],
        responses={200: ChangePreviewSerializer},
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def preview(self, request: Request, pk: Any = None) -> Response:
        change = self.get_object()
        query = ChangePreviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        result = selectors.change_request_preview(
            actor=self.actor,
            request=change,
            after=query.validated_data.get("after"),
            limit=query.validated_data["limit"],
        )
        return Response(ChangePreviewSerializer(result).data)

    @extend_schema(
        summary="Every decision on the request, all revisions, oldest first",
        responses={200: ApprovalSerializer(many=True)},
    )
    @action(detail=True, methods=["get"], pagination_class=None)
    def approvals(self, request: Request, pk: Any = None) -> Response:
        change = self.get_object()
        rows = selectors.approvals_of(change).select_related("request")
        return Response(ApprovalSerializer(rows, many=True).data)

    def _decide(self, request: Request, decide: Any) -> Response:
        change = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with refusals(), transaction.atomic():
            decide(actor=self.actor, request=change, **serializer.validated_data)
            self.ensure_in_scope(change)
        return self.render(self.get_queryset().get(pk=change.pk))

    @extend_schema(
        summary="Approve the revision you reviewed (never your own request)",
        request=DecisionSerializer,
        responses={200: ChangeRequestSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="approve")
    def approve(self, request: Request, pk: Any = None) -> Response:
        return self._decide(request, services.change_request_approve)

    @extend_schema(
        summary="Reject the revision you reviewed",
        request=DecisionSerializer,
        responses={200: ChangeRequestSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="approve")
    def reject(self, request: Request, pk: Any = None) -> Response:
        return self._decide(request, services.change_request_reject)

    def _run(self, run: Any) -> Response:
        change = self.get_object()
        with refusals(), transaction.atomic():
            run(actor=self.actor, request=change)
            self.ensure_in_scope(change)
        return self.render(self.get_queryset().get(pk=change.pk))

    @extend_schema(
        summary="Execute an approved request (now, or scheduled for its time / window)",
        request=None,
        responses={200: ChangeRequestSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="execute")
    def execute(self, request: Request, pk: Any = None) -> Response:
        return self._run(execution.change_request_execute)

    @extend_schema(
        summary="Cancel the request (and whatever has not run yet on its devices)",
        request=None,
        responses={200: ChangeRequestSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="change")
    def cancel(self, request: Request, pk: Any = None) -> Response:
        return self._run(execution.change_request_cancel)


class ApprovalPolicyViewSet(ScopedModelViewSet):
    """Approval policies: which requests need approval and how many approvers. Every write
    needs ``changerequest.change`` on the policy's organization."""

    queryset = ApprovalPolicy.objects.select_related("organization")
    serializer_class = ApprovalPolicySerializer
    pagination_class = CursorPagination
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filterset_fields = ["organization", "profile"]

    def action_name(self) -> str:
        return "view" if super().action_name() == "view" else "change"

    def create_object(self, serializer: Any) -> ApprovalPolicy:
        data = dict(serializer.validated_data)
        organization = self.organization_for(data.pop("organization_id"))
        return policy_services.policy_create(actor=self.actor, organization=organization, **data)

    def update_object(self, serializer: Any) -> ApprovalPolicy:
        data = dict(serializer.validated_data)
        moved = data.pop("organization_id", serializer.instance.organization_id)
        if moved != serializer.instance.organization_id:
            raise exceptions.ValidationError({"organization": ["A policy cannot move."]})
        return policy_services.policy_update(actor=self.actor, policy=serializer.instance, **data)

    def destroy_object(self, instance: ApprovalPolicy) -> None:
        policy_services.policy_delete(actor=self.actor, policy=instance)
