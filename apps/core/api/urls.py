from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .views import AuditLogViewSet, EventViewSet

router = SimpleRouter(trailing_slash=True)
router.register("audit-log", AuditLogViewSet, basename="audit-log")
router.register("events", EventViewSet, basename="event")

urlpatterns = router.urls
