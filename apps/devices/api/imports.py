"""REST endpoints for bulk onboarding (device imports) and the device CSV export.

- ``POST /device-imports/`` (multipart: ``organization``, ``file``) needs ``device.add`` on the
  organization; it stores the file and queues the job (201 with the job).
- ``GET /device-imports/`` and ``/device-imports/{id}/`` (``job.view``): status and progress.
- ``GET /device-imports/{id}/rejected.csv``: the rejected rows with an ``error`` column.
- ``GET /device-imports/{id}/log/`` and ``POST /device-imports/{id}/cancel/`` (``device.add``):
  see ``jobs.py``.
- ``GET /device-exports/devices.csv?<selection>`` (``device.view``): every visible device
  matching the selection, streamed in the import format. (It is not ``/devices/export.csv``:
  the devices router is included first and would take ``export.csv`` for a device id.)
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request

from apps.core.api.viewsets import ScopedCreateMixin, ScopedViewSetMixin
from apps.core.models import Job
from apps.devices import exports, imports
from apps.devices.models import Device

from .jobs import JobControlMixin


class DeviceImportSerializer(serializers.ModelSerializer[Job]):
    organization = serializers.UUIDField(source="organization_id", read_only=True)
    file_name = serializers.SerializerMethodField()
    percent = serializers.IntegerField(read_only=True)
    rejected_url = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "organization",
            "status",
            "file_name",
            "total",
            "processed",
            "succeeded",
            "failed",
            "percent",
            "result",
            "error",
            "actor_label",
            "created_at",
            "started_at",
            "finished_at",
            "rejected_url",
        ]
        read_only_fields = fields

    def get_file_name(self, job: Job) -> str:
        return str(job.params.get("file_name", ""))

    def get_rejected_url(self, job: Job) -> str:
        return reverse("v1:device-import-rejected", kwargs={"pk": job.pk})


class DeviceImportCreateSerializer(serializers.Serializer[Any]):
    organization = serializers.UUIDField()
    file = serializers.FileField(allow_empty_file=True)


class DeviceImportViewSet(  # type: ignore[misc]
    JobControlMixin,
    ScopedViewSetMixin,
    ScopedCreateMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Bulk onboarding jobs: upload a CSV or JSON file of devices; follow its progress."""

    queryset = Job.objects.filter(kind=imports.KIND)
    serializer_class = DeviceImportSerializer
    input_serializers = {"create": DeviceImportCreateSerializer}
    parser_classes = [MultiPartParser, FormParser]
    filter_backends = ()
    cancel_kinds = (imports.KIND,)

    def permission(self, action: str | None = None) -> str:
        """Starting an import is adding devices; everything else is reading a job."""
        if (action or self.action_name()) == "add":
            return "device.add"
        return super().permission(action)

    def get_queryset(self) -> QuerySet[Job]:
        return super().get_queryset().select_related("organization")

    def create_object(self, serializer: Any) -> Job:
        data = serializer.validated_data
        organization = self.organization_for(data["organization"], "add")
        return imports.import_start(
            actor=self.actor, organization=organization, upload=data["file"]
        )

    @extend_schema(
        request={"multipart/form-data": DeviceImportCreateSerializer},
        responses={201: DeviceImportSerializer},
        summary="Upload a CSV or JSON file of devices (starts an import job)",
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        return super().create(request, *args, **kwargs)

    @extend_schema(
        operation_id="device_imports_rejected_csv",
        summary="The rejected rows of an import, as uploaded, with an error column",
        responses={(200, "text/csv"): OpenApiResponse(response=OpenApiTypes.STR)},
    )
    def rejected(self, request: Request, pk: Any = None) -> StreamingHttpResponse:
        """Routed by hand (urls_imports): a router would add a slash after ``.csv``."""
        job = self.get_object()
        response = StreamingHttpResponse(exports.rejected_csv(job), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="rejected-{job.pk}.csv"'
        return response


SELECTION_PARAMETERS = [
    OpenApiParameter("filter", str, description="A whole selection as a JSON object."),
    *(
        OpenApiParameter(key, str, description="Repeated or comma-separated values.")
        for key in exports.LIST_KEYS
    ),
    OpenApiParameter("search", str, description="Serial prefix or name substring."),
    OpenApiParameter("attributes", str, description="JSON object the attributes contain."),
    OpenApiParameter("bbox", str, description="min_lat,min_lon,max_lat,max_lon"),
]


class DeviceExportViewSet(ScopedViewSetMixin, viewsets.GenericViewSet):  # type: ignore[misc]
    """Export a selection of the fleet as CSV (the import format: re-imports cleanly)."""

    queryset = Device.objects.all()
    filter_backends = ()
    pagination_class = None

    @extend_schema(
        summary="Export the devices matching a selection as CSV",
        parameters=SELECTION_PARAMETERS,
        responses={(200, "text/csv"): OpenApiResponse(response=OpenApiTypes.STR)},
    )
    def list(self, request: Request) -> StreamingHttpResponse:
        spec = exports.selection_from_query(request.query_params)
        rows = exports.device_export_queryset(actor=self.actor, spec=spec)
        response = StreamingHttpResponse(exports.device_csv(rows), content_type="text/csv")
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="devices-{stamp}.csv"'
        response.status_code = status.HTTP_200_OK
        return response
