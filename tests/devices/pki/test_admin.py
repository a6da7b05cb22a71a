"""The PKI back office: lists without key material, revocations through the services."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.models import User
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog
from apps.devices.models_pki import CertificateAuthority
from apps.devices.pki import services

from .support import fleet_device, issue, make_ca, register_ca

pytestmark = pytest.mark.django_db


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root@fleetops.example", "pw-12345678"))
    return client


def test_the_lists_and_pages_render_without_key_material(tree, root):
    row = issue(fleet_device(tree["retail"]))
    token, secret = services.device_token_create(actor=SYSTEM, device=row.device)
    intermediate = CertificateAuthority.objects.get(kind="intermediate")
    pages = {
        "/admin/devices/certificateauthority/": "Retail Co devices CA",
        f"/admin/devices/certificateauthority/{intermediate.pk}/change/": intermediate.fingerprint,
        "/admin/devices/devicecertificate/": row.serial_number,
        f"/admin/devices/devicecertificate/{row.pk}/change/": row.fingerprint,
        "/admin/devices/devicetoken/": token.prefix,
        f"/admin/devices/devicetoken/{token.pk}/change/": token.prefix,
    }
    key = bytes(intermediate.key_encrypted).decode()
    for url, expected in pages.items():
        response = root.get(url)
        content = response.content.decode()
        assert (response.status_code, expected in content) == (200, True), url
        for secret_value in (key, token.token_hash, token.broker_hash, secret):
            assert secret_value not in content, url
    listing = root.get("/admin/devices/devicecertificate/", {"q": row.fingerprint})
    assert [r.pk for r in listing.context["cl"].result_list] == [row.pk]
    assert listing.context["cl"].show_full_result_count is False


def test_admin_actions_revoke_through_the_services(tree, root):
    row = issue(fleet_device(tree["retail"]))
    token, _ = services.device_token_create(actor=SYSTEM, device=row.device)
    authority = register_ca(tree["acme"], make_ca())
    for url, action, pk in (
        ("/admin/devices/devicecertificate/", "revoke_certificate", row.pk),
        ("/admin/devices/devicetoken/", "revoke_token", token.pk),
        ("/admin/devices/certificateauthority/", "revoke_authority", authority.pk),
    ):
        response = root.post(url, {"action": action, "_selected_action": [str(pk)]})
        assert response.status_code == 302, action
    row.refresh_from_db()
    token.refresh_from_db()
    authority.refresh_from_db()
    assert (row.status, token.revoked_at is not None, authority.revoked_at is not None) == (
        "revoked",
        True,
        True,
    )
    sources = set(
        AuditLog.objects.filter(
            action__in=[
                "device.certificate_revoke",
                "device.token_revoke",
                "certificateauthority.revoke",
            ]
        ).values_list("action", "source")
    )
    assert sources == {
        ("device.certificate_revoke", "admin"),
        ("device.token_revoke", "admin"),
        ("certificateauthority.revoke", "admin"),
    }
