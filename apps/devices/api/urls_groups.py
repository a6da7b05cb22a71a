from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .groups import DeviceGroupViewSet

router = SimpleRouter(trailing_slash=True)
router.register("groups", DeviceGroupViewSet, basename="devicegroup")

urlpatterns = router.urls
