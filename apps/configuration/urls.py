"""Portal pages of configuration management (namespace ``configuration``)."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("o/<uuid:organization_id>/configuration/", views.overview, name="overview"),
    path("configuration/devices/<uuid:device_id>/", views.device_page, name="device"),
    path(
        "configuration/devices/<uuid:device_id>/panel/",
        views.device_panel,
        name="device-panel",
    ),
]
