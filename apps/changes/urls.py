"""Portal pages of change requests (namespace ``changes``)."""

from __future__ import annotations

from django.urls import path, register_converter

from . import views


class ActionConverter:
    """The actions' own words only: other pages under a request (a kind's progress page,
    ``change-requests/<id>/commands/``) stay free for their apps."""

    regex = "|".join(views.DONE)

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ActionConverter, "change_action")

urlpatterns = [
    path("o/<uuid:organization_id>/change-requests/", views.request_list, name="list"),
    path("o/<uuid:organization_id>/change-requests/new/", views.request_new, name="new"),
    path("o/<uuid:organization_id>/approvals/", views.inbox, name="inbox"),
    path("change-requests/<uuid:request_id>/", views.request_detail, name="detail"),
    path(
        "change-requests/<uuid:request_id>/<change_action:verb>/",
        views.request_action,
        name="action",
    ),
]
