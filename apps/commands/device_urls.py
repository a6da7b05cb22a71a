"""``/device/v1/commands``: commands for devices that poll over HTTPS (included from
config/urls.py next to ``apps.devices.device_urls``)."""

from __future__ import annotations

from django.urls import re_path

from .device_views import CommandResultView, CommandsPollView

app_name = "device_commands"

urlpatterns = [
    re_path(r"^commands/?$", CommandsPollView.as_view(), name="poll"),
    re_path(
        r"^commands/(?P<command_id>[0-9a-fA-F-]{36})/result/?$",
        CommandResultView.as_view(),
        name="result",
    ),
]
