"""Portal routes of the telemetry app (namespace ``telemetry``), plus ``/metrics``."""

from __future__ import annotations

from django.urls import path

from . import metrics, views_deadletters, views_operations

urlpatterns = [
    path("metrics", metrics.metrics_view, name="metrics"),
    path("operations/", views_operations.operations, name="operations"),
    path(
        "o/<uuid:organization_id>/dead-letters/",
        views_deadletters.dead_letter_list,
        name="dead-letters",
    ),
    path(
        "o/<uuid:organization_id>/dead-letters/<uuid:letter_id>/",
        views_deadletters.dead_letter_detail,
        name="dead-letter",
    ),
    path(
        "o/<uuid:organization_id>/dead-letters/<uuid:letter_id>/replay/",
        views_deadletters.dead_letter_act,
        {"operation": "replay"},
        name="dead-letter-replay",
    ),
    path(
        "o/<uuid:organization_id>/dead-letters/<uuid:letter_id>/discard/",
        views_deadletters.dead_letter_act,
        {"operation": "discard"},
        name="dead-letter-discard",
    ),
]
