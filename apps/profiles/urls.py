from __future__ import annotations

from django.urls import path

from . import views, views_templates

urlpatterns = [
    path("o/<uuid:organization_id>/profiles/", views.profile_list, name="list"),
    path("o/<uuid:organization_id>/profiles/new/", views.profile_create, name="create"),
    path("profiles/<uuid:profile_id>/", views.profile_detail, name="detail"),
    path("profiles/<uuid:profile_id>/edit/", views.profile_edit, name="edit"),
    path(
        "o/<uuid:organization_id>/provisioning/",
        views_templates.template_list,
        name="provisioning",
    ),
    path(
        "o/<uuid:organization_id>/provisioning/new/",
        views_templates.template_create,
        name="provisioning-create",
    ),
    path(
        "provisioning/<uuid:template_id>/edit/",
        views_templates.template_edit,
        name="provisioning-edit",
    ),
    path(
        "provisioning/<uuid:template_id>/delete/",
        views_templates.template_delete,
        name="provisioning-delete",
    ),
]
