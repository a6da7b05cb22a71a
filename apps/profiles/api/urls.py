from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .views import ProfileVersionViewSet, ProfileViewSet

router = SimpleRouter(trailing_slash=True)
router.register("profiles", ProfileViewSet, basename="profile")
router.register("profile-versions", ProfileVersionViewSet, basename="profileversion")

urlpatterns = router.urls
