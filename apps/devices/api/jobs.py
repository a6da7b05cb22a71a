"""Job log and cancel endpoints, shared by the job viewsets (``/jobs/`` and ``/device-imports/``).

- ``GET .../{id}/log/?after=<line id>`` (``job.view``): the job's log lines, oldest first,
  cursor-paginated; ``after`` tails a running job (the lines written since the last one read).
- ``POST .../{id}/cancel/``: cancels a queued or running job (``jobs.job_cancel``). It needs the
  permission that starting that kind of job needs on the job's organization (``device.add`` for
  an import, the transition's permission for a bulk transition): 404 outside the caller's view,
  403 without it, 400 (``status``) once the job has finished.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.pagination import CursorPagination
from apps.core.models import JobLine
from apps.devices import jobs


class JobLineSerializer(serializers.ModelSerializer[JobLine]):
    class Meta:
        model = JobLine
        fields = ["id", "created_at", "level", "message"]
        read_only_fields = fields


class JobLogQuerySerializer(serializers.Serializer[Any]):
    after = serializers.IntegerField(
        required=False, min_value=0, help_text="Only the lines after the line with this id."
    )


class LinePagination(CursorPagination):
    ordering = ("id",)  # type: ignore[assignment]


class JobControlMixin:
    """``log`` and ``cancel`` for a scoped viewset over ``Job`` (put it before
    ``ScopedViewSetMixin``). ``cancel_kinds``: the job kinds the viewset serves (None: all)."""

    cancel_kinds: tuple[str, ...] | None = None

    def _may_attempt(self) -> bool:
        """Cancelling is refused whatever the id to whoever may start none of these jobs."""
        if getattr(self, "action", None) != "cancel":
            return super()._may_attempt()  # type: ignore[misc, no-any-return]
        actor = self.actor  # type: ignore[attr-defined]
        view = self.permission("view")  # type: ignore[attr-defined]
        permissions = jobs.cancel_permissions(self.cancel_kinds)
        return bool(actor.has_any(view) and any(actor.has_any(p) for p in permissions))

    @extend_schema(
        summary="The job's log lines, oldest first (``after`` tails a running job)",
        parameters=[JobLogQuerySerializer],
        responses={200: JobLineSerializer(many=True)},
    )
    @action(
        detail=True,
        methods=["get"],
        pagination_class=LinePagination,
        serializer_class=JobLineSerializer,
    )
    def log(self, request: Request, pk: Any = None) -> Response:
        job = self.get_object()  # type: ignore[attr-defined]
        query = JobLogQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        lines = jobs.job_lines(job=job, after=query.validated_data.get("after"))
        page = self.paginate_queryset(lines)  # type: ignore[attr-defined]
        return self.get_paginated_response(JobLineSerializer(page, many=True).data)  # type: ignore[attr-defined, no-any-return]

    @extend_schema(
        summary="Cancel a queued or running job (it stops after the chunk in progress)",
        request=None,
    )
    @action(detail=True, methods=["post"], scope_action="view")
    def cancel(self, request: Request, pk: Any = None) -> Response:
        job = self.get_object()  # type: ignore[attr-defined]
        with transaction.atomic():
            job = jobs.job_cancel(actor=self.actor, job=job)  # type: ignore[attr-defined]
            self.ensure_in_scope(job)  # type: ignore[attr-defined]
        return self.render(self.get_queryset().get(pk=job.pk))  # type: ignore[attr-defined, no-any-return]
