"""The broker's CRL bundle re-signs only the CAs whose revocations changed (or whose CRL is half
way through its validity); the others' last CRL is reused byte for byte. CRL numbers only grow,
every live intermediate has its CRL in the bundle, and the broker still refuses a revoked
device."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from django.utils import timezone

from apps.devices.models_pki import CertificateAuthority
from apps.devices.pki import certs, revocation
from tests.broker_support import ConnectionRefused, MqttBroker, connect_device, issue_certificate
from tests.factories import make_organization

from .support import fleet_device, issue

pytestmark = pytest.mark.django_db

MARKER = "-----BEGIN X509 CRL-----"


def parts(bundle: str) -> dict[str, str]:
    """The bundle's CRLs (PEM) by issuer subject."""
    found = {}
    for part in bundle.split(MARKER)[1:]:
        pem = MARKER + part
        found[x509.load_pem_x509_crl(pem.encode()).issuer.rfc4514_string()] = pem
    return found


def number(pem: str) -> int:
    crl = x509.load_pem_x509_crl(pem.encode())
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def signed_by(crl_pem: str, authority: CertificateAuthority) -> bool:
    public_key: Any = certs.load_pem(authority.certificate_pem).public_key()
    return x509.load_pem_x509_crl(crl_pem.encode()).is_signature_valid(public_key)


def serials(pem: str) -> set[str]:
    return {format(entry.serial_number, "x") for entry in x509.load_pem_x509_crl(pem.encode())}


@pytest.fixture
def two_cas(tree):
    """Retail and Hospital each with a device certificate (so each has its intermediate CA)."""
    retail = issue(fleet_device(tree["retail"], "R-1"))
    hospital = issue(fleet_device(tree["hospital"], "H-1"))
    return retail, hospital


def test_an_unchanged_ca_is_not_signed_again(two_cas):
    first = revocation.crl_bundle()
    numbers = dict(CertificateAuthority.objects.values_list("subject", "crl_number"))
    second = revocation.crl_bundle()
    assert second == first
    assert dict(CertificateAuthority.objects.values_list("subject", "crl_number")) == numbers
    assert sorted(number(pem) for pem in parts(second).values()) == [1, 1]


def test_a_revocation_re_signs_only_its_cas_crl_with_a_higher_number(two_cas):
    retail, hospital = two_cas
    before = parts(revocation.crl_bundle())
    retail_subject, hospital_subject = retail.issuer.subject, hospital.issuer.subject

    revocation.revoke_certificate(retail, "key_compromise")
    after = parts(revocation.crl_bundle())

    assert after[hospital_subject] == before[hospital_subject]  # the same bytes
    assert (number(before[retail_subject]), number(after[retail_subject])) == (1, 2)
    assert (serials(before[retail_subject]), serials(after[retail_subject])) == (
        set(),
        {retail.serial_number},
    )
    stored = CertificateAuthority.objects.get(pk=retail.issuer_id)
    assert (stored.crl_number, stored.crl_pem) == (2, after[retail_subject])
    assert signed_by(after[retail_subject], stored)

    revocation.revoke_certificate(hospital, "superseded")
    again = parts(revocation.crl_bundle())
    assert again[retail_subject] == after[retail_subject]
    assert (number(again[hospital_subject]), serials(again[hospital_subject])) == (
        2,
        {hospital.serial_number},
    )


def test_the_bundle_holds_every_live_intermediates_crl(tree, two_cas):
    revocation.crl_bundle()
    newcomer = issue(fleet_device(tree["store"], "S-1"))  # a third CA, after the last bundle
    bundle = parts(revocation.crl_bundle())
    expected = CertificateAuthority.objects.filter(kind="intermediate", revoked_at=None)
    assert sorted(bundle) == sorted(expected.values_list("subject", flat=True))
    assert len(bundle) == 3
    assert number(bundle[newcomer.issuer.subject]) == 1
    assert all(signed_by(bundle[authority.subject], authority) for authority in expected)


def test_a_crl_half_way_through_its_validity_is_signed_again(two_cas):
    retail, hospital = two_cas
    before = parts(revocation.crl_bundle())
    stored = CertificateAuthority.objects.get(pk=retail.issuer_id)
    signed = x509.load_pem_x509_crl(stored.crl_pem.encode())
    last, following = signed.last_update_utc, signed.next_update_utc
    assert following is not None
    assert stored.crl_refresh_at == last + (following - last) / 2  # how broker.sync plans
    CertificateAuthority.objects.filter(pk=retail.issuer_id).update(
        crl_refresh_at=timezone.now() - dt.timedelta(seconds=1)
    )

    after = parts(revocation.crl_bundle())

    assert after[hospital.issuer.subject] == before[hospital.issuer.subject]
    assert number(after[retail.issuer.subject]) == 2
    refreshed = CertificateAuthority.objects.get(pk=retail.issuer_id)
    assert refreshed.crl_refresh_at > timezone.now()


def test_a_fresh_crl_always_takes_the_next_number(two_cas):
    retail, _ = two_cas
    authority = CertificateAuthority.objects.get(pk=retail.issuer_id)
    revocation.crl_bundle()
    numbers = [number(revocation.crl(authority)) for _ in range(2)]
    numbers.append(number(parts(revocation.crl_bundle())[authority.subject]))
    assert numbers == [2, 3, 3]  # the bundle reuses the last one


def test_the_broker_refuses_a_revoked_device_and_still_accepts_the_other_cas(
    mqtt_broker: MqttBroker, tmp_path: Path
) -> None:
    acme, globex = make_organization("Acme"), make_organization("Globex")
    revoked_device = fleet_device(acme, "A-1")
    other_device = fleet_device(globex, "G-1")
    revoked = issue_certificate(revoked_device, tmp_path / "a")
    other = issue_certificate(other_device, tmp_path / "g")
    mqtt_broker.sync()
    for credentials in (revoked, other):
        session = connect_device(mqtt_broker, credentials)
        assert session.connected
        session.close()
    globex_crl = CertificateAuthority.objects.get(organization=globex).crl_pem

    revocation.revoke_certificate(revoked.certificate, "key_compromise")
    mqtt_broker.sync()

    with pytest.raises(ConnectionRefused):
        connect_device(mqtt_broker, revoked)
    session = connect_device(mqtt_broker, other)  # its CA's CRL was reused, unchanged
    assert session.connected
    session.close()
    assert CertificateAuthority.objects.get(organization=globex).crl_pem == globex_crl
    assert globex_crl in (mqtt_broker.directory / "crl.pem").read_text()
