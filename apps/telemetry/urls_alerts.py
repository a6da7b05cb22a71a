"""Portal alerting pages (namespace ``alerts``)."""

from __future__ import annotations

from django.urls import path

from . import views_alerts

urlpatterns = [
    path("o/<uuid:organization_id>/alerts/", views_alerts.alert_list, name="list"),
    path("o/<uuid:organization_id>/alerts/count/", views_alerts.alert_count, name="count"),
    path("alerts/<uuid:alert_id>/", views_alerts.alert_detail, name="detail"),
    path(
        "alerts/<uuid:alert_id>/<str:verb>/",
        views_alerts.alert_action,
        name="action",
    ),
    path("o/<uuid:organization_id>/alert-rules/", views_alerts.rule_list, name="rules"),
    path("o/<uuid:organization_id>/alert-rules/new/", views_alerts.rule_form, name="rule-new"),
    path(
        "o/<uuid:organization_id>/alert-rules/<uuid:rule_id>/",
        views_alerts.rule_form,
        name="rule",
    ),
    path("alert-rules/<uuid:rule_id>/delete/", views_alerts.rule_delete, name="rule-delete"),
    path(
        "devices/<uuid:device_id>/alerts-panel/",
        views_alerts.device_panel,
        name="device-panel",
    ),
]
