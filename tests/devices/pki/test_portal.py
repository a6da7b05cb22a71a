"""The portal's certificates page, bring-your-own CA registration, and the device page's
credentials panel: who sees what, who may change what, and the token shown once."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.devices.models_pki import CertificateAuthority, DeviceCertificate, DeviceToken
from apps.devices.pki import external, services
from tests.factories import make_member

from .support import certificate, fleet_device, issue, make_ca, pem, register_ca

pytestmark = pytest.mark.django_db


def client_for(organization, role: str) -> Client:
    client = Client()
    client.force_login(make_member(organization, role))
    return client


def page_url(organization) -> str:
    return f"/o/{organization.pk}/certificates/"


def device_url(organization, device) -> str:
    return f"/o/{organization.pk}/devices/{device.pk}/"


def test_a_viewer_sees_the_authorities_and_the_findings_but_may_not_register(tree):
    row = issue(fleet_device(tree["retail"], "EXPIRING"))
    DeviceCertificate.objects.filter(pk=row.pk).update(
        not_after=timezone.now() + dt.timedelta(days=3)
    )
    register_ca(tree["acme"], make_ca(), label="Acme factory")
    client = client_for(tree["acme"], Role.VIEWER)
    page = client.get(page_url(tree["acme"]))
    assert page.status_code == 200
    content = page.content.decode()
    assert 'id="authority-root"' in content
    assert content.count('data-kind="intermediate"') == 1
    assert "Acme factory" in content and 'data-status="active"' in content
    assert f'data-certificate-id="{row.pk}"' in content and 'data-kind="expiring"' in content
    assert 'id="register-form"' not in content and ">Revoke<" not in content
    refused = client.post(f"{page_url(tree['acme'])}register/", {"name": "Mine"})
    assert refused.status_code == 403
    assert not CertificateAuthority.objects.filter(name="Mine").exists()


def test_the_kind_filter_narrows_the_findings(tree):
    row = issue(fleet_device(tree["retail"]))
    DeviceCertificate.objects.filter(pk=row.pk).update(
        not_after=timezone.now() + dt.timedelta(days=3)
    )
    client = client_for(tree["acme"], Role.VIEWER)
    assert (
        'data-kind="expiring"'
        in client.get(page_url(tree["acme"]) + "?kind=expiring").content.decode()
    )
    assert (
        'id="findings-empty"' in client.get(page_url(tree["acme"]) + "?kind=aged").content.decode()
    )


def test_another_organization_gets_404(tree):
    client = client_for(tree["globex"], Role.OWNER)
    assert client.get(page_url(tree["acme"])).status_code == 404
    authority = register_ca(tree["acme"], make_ca())
    url = f"{page_url(tree['acme'])}authorities/{authority.pk}/"
    assert client.get(url).status_code == 404
    own = client.get(f"{page_url(tree['globex'])}authorities/{authority.pk}/")
    assert own.status_code == 404


def test_an_admin_registers_a_ca_with_the_code_and_the_openssl_commands(tree):
    client = client_for(tree["acme"], Role.ADMIN)
    response = client.post(f"{page_url(tree['acme'])}register/", {"name": "Line 4 CA"})
    pending = CertificateAuthority.objects.get(name="Line 4 CA")
    detail = f"{page_url(tree['acme'])}authorities/{pending.pk}/"
    assert (response.status_code, response["Location"]) == (302, detail)
    page = client.get(detail).content.decode()
    code = pending.verification_code
    assert f'<code class="secret" id="registration-code">{code}</code>' in page
    assert f'-subj "/CN={code}"' in page and "openssl x509 -req" in page

    ca = make_ca()
    wrong, _ = certificate(code, issuer=make_ca("Other"))
    refused = client.post(
        detail, {"certificate": pem(ca[0]), "verification_certificate": pem(wrong)}
    )
    assert refused.status_code == 400
    assert "It is not signed by the CA certificate&#x27;s key." in refused.content.decode()

    proof, _ = certificate(code, issuer=ca)
    done = client.post(detail, {"certificate": pem(ca[0]), "verification_certificate": pem(proof)})
    assert (done.status_code, done["Location"]) == (302, page_url(tree["acme"]))
    pending.refresh_from_db()
    assert external.authority_status(pending) == "active"

    revoked = client.post(f"{detail}revoke/")
    pending.refresh_from_db()
    assert (revoked.status_code, external.authority_status(pending)) == (302, "revoked")


# --- the device page ---------------------------------------------------------------------------


def test_the_device_page_shows_its_credentials_and_an_operator_manages_them(tree):
    device = fleet_device(tree["acme"])
    row = issue(device)
    client = client_for(tree["acme"], Role.OPERATOR)
    page = client.get(device_url(tree["acme"], device)).content.decode()
    assert 'id="device-credentials"' in page and f'data-certificate-id="{row.pk}"' in page
    assert 'id="token-form"' in page and 'id="revoke-all-form"' in page

    created = client.post(f"{device_url(tree['acme'], device)}tokens/", {"label": "modem"})
    token_row = DeviceToken.objects.get()
    shown_at = f"{device_url(tree['acme'], device)}tokens/{token_row.pk}/"
    assert (created.status_code, created["Location"]) == (302, shown_at)
    first = client.get(shown_at)
    token = first.content.decode().split('id="device-token">')[1].split("<")[0]
    assert services.authenticate_token(token).pk == token_row.pk
    assert first["Cache-Control"] == "no-store"
    assert 'id="device-token-gone"' in client.get(shown_at).content.decode()

    client.post(f"{device_url(tree['acme'], device)}tokens/{token_row.pk}/revoke/")
    token_row.refresh_from_db()
    assert token_row.revoked_at is not None
    client.post(
        f"{device_url(tree['acme'], device)}certificates/{row.pk}/revoke/",
        {"reason": "key_compromise"},
    )
    row.refresh_from_db()
    assert (row.status, row.revocation_reason) == ("revoked", "key_compromise")


def test_revoke_all_from_the_device_page(tree):
    device = fleet_device(tree["acme"])
    row = issue(device)
    services.device_token_create(actor=SYSTEM, device=device)
    client = client_for(tree["acme"], Role.ADMIN)
    response = client.post(
        f"{device_url(tree['acme'], device)}credentials/revoke/",
        {"reason": "cessation_of_operation"},
    )
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.status, DeviceToken.objects.filter(revoked_at=None).count()) == ("revoked", 0)


def test_a_viewer_sees_the_panel_without_buttons_and_may_not_write(tree):
    device = fleet_device(tree["acme"])
    row = issue(device)
    client = client_for(tree["acme"], Role.VIEWER)
    page = client.get(device_url(tree["acme"], device)).content.decode()
    assert f'data-certificate-id="{row.pk}"' in page
    assert 'id="token-form"' not in page and 'id="revoke-all-form"' not in page
    base = device_url(tree["acme"], device)
    assert client.post(f"{base}tokens/", {"label": "x"}).status_code == 403
    assert client.post(f"{base}credentials/revoke/").status_code == 403
    assert client.post(f"{base}certificates/{row.pk}/revoke/").status_code == 403
    row.refresh_from_db()
    assert (row.status, DeviceToken.objects.count()) == ("active", 0)


def test_another_organization_cannot_touch_the_credentials(tree):
    device = fleet_device(tree["acme"])
    row = issue(device)
    client = client_for(tree["globex"], Role.OWNER)
    base = device_url(tree["acme"], device)
    assert client.post(f"{base}credentials/revoke/").status_code == 404
    assert client.post(f"{base}certificates/{row.pk}/revoke/").status_code == 404
    own = device_url(tree["globex"], device)
    assert client.post(f"{own}tokens/", {"label": "x"}).status_code == 404
    row.refresh_from_db()
    assert (row.status, DeviceToken.objects.count()) == ("active", 0)
