"""Portal routes of commands (namespace ``commands``)."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("o/<uuid:organization_id>/commands/new/", views.command_new, name="new"),
    path(
        "change-requests/<uuid:request_id>/commands/",
        views.command_progress_page,
        name="progress",
    ),
]
