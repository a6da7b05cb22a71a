from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("switch/", views.organization_switch, name="organization-switch"),
    path("o/<uuid:organization_id>/", views.dashboard, name="dashboard"),
    path("o/<uuid:organization_id>/members/", views.members, name="members"),
    path("o/<uuid:organization_id>/invitations/", views.invitations, name="invitations"),
    path("o/<uuid:organization_id>/api-keys/", views.api_keys, name="api-keys"),
    path("o/<uuid:organization_id>/audit/", views.audit_log, name="audit-log"),
    path(
        "o/<uuid:organization_id>/audit/export.csv",
        views.audit_log_export,
        name="audit-log-export",
    ),
    path(
        "members/<uuid:membership_id>/role/",
        views.membership_change_role,
        name="membership-change-role",
    ),
    path("members/<uuid:membership_id>/remove/", views.membership_remove, name="membership-remove"),
    path(
        "invitations/<uuid:invitation_id>/revoke/",
        views.invitation_revoke,
        name="invitation-revoke",
    ),
    path("invitations/<str:token>/accept/", views.invitation_accept, name="invitation-accept"),
    path("api-keys/<uuid:api_key_id>/", views.api_key_created, name="api-key-created"),
    path("api-keys/<uuid:api_key_id>/revoke/", views.api_key_revoke, name="api-key-revoke"),
    path("account/security/", views.security, name="security"),
]
