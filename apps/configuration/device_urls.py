"""Configuration endpoints of the HTTPS device API, included under ``/device/v1/``."""

from __future__ import annotations

from django.urls import re_path

from . import device_views as views

app_name = "configuration_device_api"

urlpatterns = [
    re_path(r"^configuration/?$", views.DesiredConfigurationView.as_view(), name="desired"),
    re_path(r"^config/reported/?$", views.ReportedConfigurationView.as_view(), name="reported"),
]
