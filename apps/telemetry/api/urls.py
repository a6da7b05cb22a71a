"""API routes of the telemetry app (included once from config/urls.py)."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from .alerts import AlertRuleViewSet, AlertViewSet
from .analytics import TelemetryAnalyticsViewSet
from .deadletters import DeadLetterViewSet
from .notify import NotificationChannelViewSet, NotificationPreferenceView, NotificationViewSet

router = SimpleRouter(trailing_slash=True)
router.register("alert-rules", AlertRuleViewSet, basename="alertrule")
router.register("alerts", AlertViewSet, basename="alert")
router.register("notification-channels", NotificationChannelViewSet, basename="notificationchannel")
router.register("notifications", NotificationViewSet, basename="notification")

# before "telemetry": its routes would read "dead-letters" as an id
router.register("telemetry/dead-letters", DeadLetterViewSet, basename="deadletter")
# telemetry/aggregate/, aggregate/export/, samples/, samples/export/, latest/ (analytics)
router.register("telemetry", TelemetryAnalyticsViewSet, basename="telemetry")

urlpatterns = [
    path(
        "notification-preferences/me/",
        NotificationPreferenceView.as_view(),
        name="notification-preferences",
    ),
    *router.urls,
]
