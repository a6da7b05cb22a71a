"""Portal fleet pages (namespace ``fleet``)."""

from __future__ import annotations

from django.urls import path

from . import urls_pki, views_fleet, views_fleet_device, views_fleet_transfers

urlpatterns = [
    path("o/<uuid:organization_id>/devices/", views_fleet.fleet_list, name="list"),
    path(
        "o/<uuid:organization_id>/devices/bulk-transition/",
        views_fleet.fleet_bulk_transition,
        name="bulk-transition",
    ),
    path(
        "o/<uuid:organization_id>/devices/<uuid:device_id>/",
        views_fleet_device.device_detail,
        name="device",
    ),
    path(
        "o/<uuid:organization_id>/devices/<uuid:device_id>/transition/",
        views_fleet_device.device_transition,
        name="device-transition",
    ),
    path("o/<uuid:organization_id>/transfers/", views_fleet_transfers.transfers, name="transfers"),
    path(
        "o/<uuid:organization_id>/transfers/claim/",
        views_fleet_transfers.claim,
        name="claim",
    ),
    path(
        "o/<uuid:organization_id>/transfers/<uuid:transfer_id>/<str:decision>/",
        views_fleet_transfers.transfer_decide,
        name="transfer-decide",
    ),
]
urlpatterns += urls_pki.urlpatterns
