"""API routes of commands (included from config/urls.py under /api/v1/)."""

from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .views import CommandViewSet

router = SimpleRouter(trailing_slash=True)
router.register("commands", CommandViewSet, basename="command")

urlpatterns = router.urls
