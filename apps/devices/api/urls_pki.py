from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from .pki import (
    CertificateAuditViewSet,
    CertificateAuthorityViewSet,
    DeviceCertificateViewSet,
    DeviceCredentialsViewSet,
    DeviceTokenViewSet,
)
from .refusals import BrokerRefusalViewSet

router = SimpleRouter(trailing_slash=True)
router.register("broker-refusals", BrokerRefusalViewSet, basename="brokerrefusal")
router.register(
    "certificate-authorities", CertificateAuthorityViewSet, basename="certificateauthority"
)
router.register("device-certificates", DeviceCertificateViewSet, basename="devicecertificate")
router.register("device-tokens", DeviceTokenViewSet, basename="devicetoken")

urlpatterns = [
    path(
        "certificate-audit/",
        CertificateAuditViewSet.as_view({"get": "list"}),
        name="certificate-audit",
    ),
    # Not an action of the devices router: credential.* permissions, not device.*.
    path(
        "devices/<str:pk>/credentials/revoke/",
        DeviceCredentialsViewSet.as_view({"post": "revoke"}, scope_action="delete"),
        name="device-credentials-revoke",
    ),
    *router.urls,
]
