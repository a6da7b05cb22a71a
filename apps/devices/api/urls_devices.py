from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .views import DeviceViewSet, JobViewSet, TransferViewSet

router = SimpleRouter(trailing_slash=True)
router.register("devices", DeviceViewSet, basename="device")
router.register("transfers", TransferViewSet, basename="transfer")
router.register("jobs", JobViewSet, basename="job")

urlpatterns = router.urls
