"""Portal routes of analytics (namespace ``analytics``): the fleet dashboard and its map."""

from __future__ import annotations

from django.urls import path

from . import views_dashboard

urlpatterns = [
    path(
        "o/<uuid:organization_id>/fleet-dashboard/",
        views_dashboard.fleet_dashboard,
        name="dashboard",
    ),
    path(
        "o/<uuid:organization_id>/fleet-dashboard/map/",
        views_dashboard.fleet_map,
        name="map",
    ),
]
