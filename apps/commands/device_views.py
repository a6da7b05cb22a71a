"""The HTTPS side of commands, for devices that poll (``/device/v1/``):

- ``GET /device/v1/commands``: the authenticated device's commands still to be delivered
  (``{"commands": [<the MQTT payload>...]}``), oldest first;
- ``POST /device/v1/commands/<id>/result``: ``{"status", "output", "error"}``, as on
  ``devices/<id>/commands/<id>/result``. 202 when recorded (or already recorded: idempotent),
  404 for a command that is not this device's, 400 for a malformed report.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.viewsets import request_actor
from apps.devices.device_views import DeviceAPIView

from .kind import document
from .services import Report, commands_poll, results_record


class CommandsPollView(DeviceAPIView):
    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        commands = commands_poll(device=self.device)
        return Response({"commands": [document(command) for command in commands]})


class CommandResultView(DeviceAPIView):
    @extend_schema(exclude=True)
    def post(self, request: Request, command_id: str) -> Response:
        body: Any = request.data
        if not isinstance(body, dict):
            raise exceptions.ValidationError({"status": ["The body must be a JSON object."]})
        report = Report(
            device_id=self.device.pk,
            command_id=command_id,
            document=dict(body),
            at=timezone.now(),
        )
        refused = results_record(reports=[report], actor=request_actor(request))
        if refused and refused[0].reason == "unknown_command":
            raise exceptions.NotFound("No such command for this device.")
        if refused:
            raise exceptions.ValidationError({"status": [refused[0].detail]})
        return Response({"recorded": True}, status=status.HTTP_202_ACCEPTED)
