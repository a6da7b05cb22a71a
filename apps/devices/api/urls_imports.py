from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from .imports import DeviceExportViewSet, DeviceImportViewSet

router = SimpleRouter(trailing_slash=True)
router.register("device-imports", DeviceImportViewSet, basename="device-import")

# Not "devices/export.csv": the devices router (included first) would read it as a device id.
urlpatterns = [
    path(
        "device-exports/devices.csv",
        DeviceExportViewSet.as_view({"get": "list"}),
        name="device-export",
    ),
    path(
        "device-imports/<str:pk>/rejected.csv",
        DeviceImportViewSet.as_view({"get": "rejected"}, scope_action="view"),
        name="device-import-rejected",
    ),
    *router.urls,
]
