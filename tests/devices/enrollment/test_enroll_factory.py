"""POST /device/v1/enroll with a factory certificate from a manufacturer's registered CA:
first contact, re-enrollment of a wiped device (same identity), and certificates that are
not the device's own."""

from __future__ import annotations

import pytest

from apps.core.actors import SYSTEM
from apps.core.models import AuditLog
from apps.devices import enrollment_policies, services
from apps.devices.choices import CertificateKind, CredentialStatus, DeviceState
from apps.devices.models import BrokerState, Device, DeviceCertificate
from apps.devices.pki import authorities
from apps.profiles.models import ProfileVersion

from .support import FactoryCA, chain_verifies, common_name, enroll, make_profile, new_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def factory(tree):
    """Acme's factory CA and a factory-certificate policy trusting it (devices land in Retail)."""
    profile = make_profile(tree["acme"])
    ca = FactoryCA(tree["acme"])
    policy = enrollment_policies.policy_create(
        actor=SYSTEM,
        organization=tree["acme"],
        name="Factory line 1",
        method="factory_certificate",
        profile=profile,
        target_organization=tree["retail"],
        authorities=[ca.authority],
    )
    return ca, policy, profile


def certificates(device):
    return list(
        DeviceCertificate.objects.filter(device=device)
        .order_by("id")
        .values_list("kind", "status", "revocation_reason")
    )


def test_a_device_with_a_factory_certificate_enrolls(tree, factory):
    ca, _policy, _ = factory
    made = ca.device("FX-1")
    response = enroll(made.body(new_key()))
    assert response.status_code == 201, response.content
    device = Device.objects.get(serial="FX-1")
    data = response.json()
    assert (data["device_id"], data["state"], device.organization) == (
        str(device.pk),
        "active",
        tree["retail"],
    )
    assert chain_verifies(
        data["certificate"], data["certificate_chain"], authorities.root_certificate_pem()
    )
    assert common_name(data["certificate"]) == str(device.pk)
    factory_row = DeviceCertificate.objects.get(device=device, kind=CertificateKind.FACTORY)
    assert (factory_row.issuer, factory_row.certificate_pem) == (ca.authority, made.certificate_pem)
    assert certificates(device) == [
        (CertificateKind.FACTORY, CredentialStatus.ACTIVE, ""),
        (CertificateKind.OPERATIONAL, CredentialStatus.ACTIVE, ""),
    ]
    audit = AuditLog.objects.get(action="device.enroll")
    assert (audit.changes["method"], audit.changes["factory_certificate"]) == (
        "factory_certificate",
        factory_row.fingerprint,
    )


def test_a_wiped_device_re_enrolls_and_keeps_its_identity(tree, factory):
    ca, _, _ = factory
    made = ca.device("FX-2")
    first = enroll(made.body(new_key()))
    device = Device.objects.get(serial="FX-2")
    broker_before = BrokerState.objects.get(pk=1).version
    # wiped: a new operational key, and it no longer knows its id (CN = serial)
    again = enroll(made.body(new_key()))
    assert again.status_code == 200, again.content
    assert again.json()["device_id"] == first.json()["device_id"] == str(device.pk)
    assert again.json()["certificate"] != first.json()["certificate"]
    assert certificates(device) == [
        (CertificateKind.FACTORY, CredentialStatus.ACTIVE, ""),
        (CertificateKind.OPERATIONAL, CredentialStatus.REVOKED, "superseded"),
        (CertificateKind.OPERATIONAL, CredentialStatus.ACTIVE, ""),
    ]
    assert BrokerState.objects.get(pk=1).version > broker_before
    assert Device.objects.filter(serial="FX-2").count() == 1
    outcomes = AuditLog.objects.filter(action="device.enroll").order_by("created_at", "id")
    assert [row.changes["outcome"] for row in outcomes] == ["registered", "reenrolled"]


def test_the_same_factory_certificate_cannot_enroll_another_serial(tree, factory):
    ca, _, _ = factory
    made = ca.device("FX-3", also="FX-4")  # names both serials
    assert enroll(made.body(new_key())).status_code == 201
    other = made.body(new_key(), serial="FX-4", common_name="FX-4")
    response = enroll(other)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "factory_certificate_elsewhere"
    assert not Device.objects.filter(serial="FX-4").exists()
    # a certificate that does not name the serial at all
    stranger = ca.device("FX-5").body(new_key(), serial="FX-6", common_name="FX-6")
    refused = enroll(stranger)
    assert (refused.status_code, refused.json()["error"]["code"]) == (
        401,
        "factory_certificate_serial",
    )


def test_another_factory_certificate_for_an_enrolled_device_is_refused(tree, factory):
    ca, _, _ = factory
    assert enroll(ca.device("FX-7").body(new_key())).status_code == 201
    clone = enroll(ca.device("FX-7").body(new_key()))
    assert (clone.status_code, clone.json()["error"]["code"]) == (
        403,
        "factory_certificate_mismatch",
    )


def test_a_bad_factory_signature_is_refused(tree, factory):
    ca, _, _ = factory
    made = ca.device("FX-8")
    data = made.body(new_key())
    data["factory_signature"] = made.sign(data, key=new_key())
    response = enroll(data)
    assert (response.status_code, response.json()["error"]["code"]) == (401, "bad_signature")
    # a valid signature over another request (here: another CSR) does not verify either
    signed = made.body(new_key())
    signed["csr"] = made.body(new_key())["csr"]
    assert enroll(signed).json()["error"]["code"] == "bad_signature"
    assert not Device.objects.exists()


def test_a_certificate_from_an_unregistered_ca_is_refused(tree, factory):
    stranger = FactoryCA(tree["globex"])  # registered by Globex, trusted by no policy
    response = enroll(stranger.device("FX-9").body(new_key()))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unknown_factory_certificate"
    assert list(response.json()["error"]["fields"]) == ["factory_certificate"]


def test_a_disabled_factory_policy_enrolls_nothing(tree, factory):
    ca, policy, _ = factory
    enrollment_policies.policy_update(actor=SYSTEM, policy=policy, enabled=False)
    response = enroll(ca.device("FX-10").body(new_key()))
    assert (response.status_code, response.json()["error"]["code"]) == (
        401,
        "unknown_factory_certificate",
    )


def test_a_quarantined_factory_device_gets_its_certificate_after_approval(tree, factory):
    ca, policy, _ = factory
    enrollment_policies.policy_update(actor=SYSTEM, policy=policy, first_contact="quarantine")
    made = ca.device("FX-11")
    key = new_key()
    assert enroll(made.body(key)).status_code == 202
    device = Device.objects.get(serial="FX-11")
    assert device.state == DeviceState.DISCOVERED
    services.device_transition(actor=SYSTEM, device=device, transition="approve")
    approved = enroll(made.body(key))
    assert approved.status_code == 200, approved.content
    assert (approved.json()["state"], common_name(approved.json()["certificate"])) == (
        "active",
        str(device.pk),
    )


def test_a_pre_registered_escrow_device_is_matched_and_activated(tree, factory):
    ca, _, profile = factory
    device = services.device_register(
        actor=SYSTEM,
        organization=tree["retail"],
        profile_version=ProfileVersion.objects.get(profile=profile),
        serial="FX-12",
    )
    response = enroll(ca.device("FX-12").body(new_key()))
    assert response.status_code == 200, response.content
    device.refresh_from_db()
    assert (response.json()["device_id"], device.state) == (str(device.pk), DeviceState.ACTIVE)
    assert DeviceCertificate.objects.filter(device=device, kind="factory").count() == 1
