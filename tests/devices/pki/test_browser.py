"""The certificates page and the device credentials panel in headless Chromium.

Screenshots land in test-artifacts/screenshots/pki-<step>.png.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.accounts.roles import Role
from apps.devices.models_pki import CertificateAuthority, DeviceCertificate
from apps.devices.pki import external, services
from tests.portal.conftest import verified_member
from tests.portal.test_browser import Shots, browser, page, sign_in  # noqa: F401

from .support import certificate, fleet_device, issue, make_ca, pem

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_admin_registers_a_ca_and_gives_a_device_a_token(page, tree):  # noqa: F811
    shots = Shots(page, "pki")
    acme = tree["acme"]
    verified_member(acme, Role.ADMIN, "admin@acme.test")
    device = fleet_device(tree["retail"], "SN-0042")
    row = issue(device)
    DeviceCertificate.objects.filter(pk=row.pk).update(
        not_after=timezone.now() + dt.timedelta(days=12)
    )
    sign_in(page, "admin@acme.test")

    page.goto(f"/o/{acme.pk}/certificates/")
    page.wait_for_selector("#authorities")
    assert page.locator("#findings tr[data-kind=expiring]").count() == 1
    shots("certificates")

    page.fill("#register-form input[name=name]", "Acme factory CA")
    page.click("#register-form button[type=submit]")
    page.wait_for_selector("#registration-code")
    code = page.inner_text("#registration-code").strip()
    pending = CertificateAuthority.objects.get(name="Acme factory CA")
    assert code == pending.verification_code
    assert f"/CN={code}" in page.inner_text("#openssl-commands")
    ca = make_ca()
    proof, _ = certificate(code, issuer=ca)
    page.fill("textarea[name=certificate]", pem(ca[0]))
    page.fill("textarea[name=verification_certificate]", pem(proof))
    shots("registration")
    page.click("#verify-form button[type=submit]")
    page.wait_for_selector(f"tr[data-authority-id='{pending.pk}'][data-status=active]")
    pending.refresh_from_db()
    assert external.authority_status(pending) == "active"
    shots("registered")

    page.goto(f"/o/{acme.pk}/devices/{device.pk}/")
    page.wait_for_selector("#device-credentials")
    page.fill("#token-form input[name=label]", "cellular modem")
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#device-token")
    token = page.inner_text("#device-token").strip()
    assert services.authenticate_token(token).device_id == device.pk
    shots("token")
    page.goto(f"/o/{acme.pk}/devices/{device.pk}/")
    page.wait_for_selector("#device-tokens")
    page.locator("#device-credentials").scroll_into_view_if_needed()
    shots("device-credentials")
