"""API routes of configuration management (included from config/urls.py under /api/v1/)."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .views import (
    DeviceLayerViewSet,
    DeviceStateViewSet,
    GroupLayerViewSet,
    OrganizationLayerViewSet,
)

router = SimpleRouter(trailing_slash=True)
router.register("configuration/devices", DeviceStateViewSet, basename="configuration-device")
router.register(
    "configuration/layers/organizations",
    OrganizationLayerViewSet,
    basename="configuration-organization-layer",
)
router.register(
    "configuration/layers/groups", GroupLayerViewSet, basename="configuration-group-layer"
)
router.register(
    "configuration/layers/devices", DeviceLayerViewSet, basename="configuration-device-layer"
)

urlpatterns = router.urls
