"""The device side over HTTPS: ``GET /device/v1/configuration`` (checksum pull) and
``POST /device/v1/config/reported``. ``docs/device-protocol.md`` is the contract."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.actors import system_actor
from apps.devices.device_views import DeviceAPIView
from apps.devices.uplinks import UplinkRefused

from .models import ConfigurationVersion
from .reports import reports_record
from .services import desired_payload, ensure_desired
from .uplink import parse_report


def _wanted(request: Request) -> set[str]:
    tags = request.headers.get("If-None-Match", "")
    wanted = {tag.strip().removeprefix("W/").strip('"') for tag in tags.split(",") if tag.strip()}
    checksum = request.query_params.get("checksum", "")
    return wanted | ({checksum} if checksum else set())


class DesiredConfigurationView(DeviceAPIView):
    """``GET /device/v1/configuration``: ``{"version", "checksum", "configuration"}``, or 304
    when the device already has that checksum (``If-None-Match`` or ``?checksum=``)."""

    @extend_schema(exclude=True)
    def get(self, request: Request) -> HttpResponse:
        device = self.device
        state = ensure_desired(device=device, actor=system_actor("configuration", source="device"))
        if state is None:
            raise exceptions.NotFound("This device has no valid configuration yet.")
        etag = f'"{state.desired_checksum}"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if state.desired_checksum in _wanted(request):
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers=headers)
        version = ConfigurationVersion.objects.get(device=device, version=state.desired_version)
        body = desired_payload(version.version, version.checksum, version.document)
        return HttpResponse(body, content_type="application/json", headers=headers)


class ReportedConfigurationView(DeviceAPIView):
    """``POST /device/v1/config/reported``: the same document as the MQTT topic; 202."""

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        try:
            report = parse_report(self.device.pk, request.data, timezone.now())
        except UplinkRefused as refusal:
            field, _, message = refusal.detail.partition(": ")
            raise exceptions.ValidationError(
                {field if message else "non_field_errors": [message or refusal.detail]}
            ) from None
        with transaction.atomic():
            stored = reports_record(reports=[report])
        return Response({"accepted": stored}, status=status.HTTP_202_ACCEPTED)
