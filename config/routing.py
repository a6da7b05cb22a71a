"""Websocket routes (Channels)."""

from __future__ import annotations

from django.urls import path

from apps.accounts.consumers import LiveConsumer
from apps.telemetry.consumers import DeviceTelemetryConsumer

websocket_urlpatterns = [
    path("ws/live/", LiveConsumer.as_asgi()),
    path("ws/telemetry/devices/<uuid:device_id>/", DeviceTelemetryConsumer.as_asgi()),
]
