"""Portal PKI pages, part of the ``fleet`` namespace (``urls_fleet`` appends them)."""

from __future__ import annotations

from django.urls import path

from . import views_pki

DEVICE = "o/<uuid:organization_id>/devices/<uuid:device_id>/"

urlpatterns = [
    path("o/<uuid:organization_id>/certificates/", views_pki.certificates, name="certificates"),
    path(
        "o/<uuid:organization_id>/certificates/register/",
        views_pki.authority_register,
        name="authority-register",
    ),
    path(
        "o/<uuid:organization_id>/certificates/authorities/<uuid:authority_id>/",
        views_pki.authority_detail,
        name="authority",
    ),
    path(
        "o/<uuid:organization_id>/certificates/authorities/<uuid:authority_id>/revoke/",
        views_pki.authority_revoke,
        name="authority-revoke",
    ),
    path(
        DEVICE + "credentials/revoke/",
        views_pki.device_credentials_revoke,
        name="device-credentials-revoke",
    ),
    path(
        DEVICE + "certificates/<uuid:certificate_id>/revoke/",
        views_pki.device_certificate_revoke,
        name="device-certificate-revoke",
    ),
    path(DEVICE + "tokens/", views_pki.device_token_create, name="device-token-create"),
    path(
        DEVICE + "tokens/<uuid:token_id>/",
        views_pki.device_token_created,
        name="device-token-created",
    ),
    path(
        DEVICE + "tokens/<uuid:token_id>/revoke/",
        views_pki.device_token_revoke,
        name="device-token-revoke",
    ),
]
