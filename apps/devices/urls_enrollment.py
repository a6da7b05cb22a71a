"""Portal pages of zero-touch provisioning (namespace ``enrollment``)."""

from __future__ import annotations

from django.urls import path

from . import views_enrollment as views

urlpatterns = [
    path("o/<uuid:organization_id>/enrollment/", views.policy_list, name="list"),
    path("o/<uuid:organization_id>/enrollment/new/", views.policy_create, name="create"),
    path("enrollment/<uuid:policy_id>/", views.policy_detail, name="detail"),
    path("enrollment/<uuid:policy_id>/edit/", views.policy_edit, name="edit"),
    path("enrollment/<uuid:policy_id>/toggle/", views.policy_toggle, name="toggle"),
    path("enrollment/<uuid:policy_id>/tokens/", views.claim_token_create, name="token-create"),
    path("claim-tokens/<uuid:token_id>/", views.claim_token_created, name="token-created"),
    path("claim-tokens/<uuid:token_id>/revoke/", views.claim_token_revoke, name="token-revoke"),
]
