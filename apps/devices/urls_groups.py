"""Portal device-group pages (namespace ``groups``)."""

from __future__ import annotations

from django.urls import path

from . import views_groups

urlpatterns = [
    path("o/<uuid:organization_id>/groups/", views_groups.group_list, name="list"),
    path("groups/<uuid:group_id>/", views_groups.group_detail, name="detail"),
    path("groups/<uuid:group_id>/add-devices/", views_groups.group_add_devices, name="add-devices"),
    path(
        "groups/<uuid:group_id>/remove/<uuid:device_id>/",
        views_groups.group_remove_device,
        name="remove-device",
    ),
    path("groups/<uuid:group_id>/share/", views_groups.group_share, name="share"),
    path("groups/<uuid:group_id>/unshare/", views_groups.group_unshare, name="unshare"),
    path("groups/<uuid:group_id>/delete/", views_groups.group_delete, name="delete"),
]
