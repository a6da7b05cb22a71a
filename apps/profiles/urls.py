from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("o/<uuid:organization_id>/profiles/", views.profile_list, name="list"),
    path("o/<uuid:organization_id>/profiles/new/", views.profile_create, name="create"),
    path("profiles/<uuid:profile_id>/", views.profile_detail, name="detail"),
    path("profiles/<uuid:profile_id>/edit/", views.profile_edit, name="edit"),
]
