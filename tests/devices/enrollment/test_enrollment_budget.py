"""The enrollment hot path's cost: statement budgets for a claim-token registration and for an
escrow device matched by its serial, the per-process signer cache (never used once the
organization's intermediate CA changed), and the claim token's use taken last (the limit still
holds when two devices race for its last use).

The budgets count every statement inside the test's transaction (savepoints included); the
organization's intermediate CA and the root exist beforehand, as they do for every enrollment
but an organization's first."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from django.db import connection
from django.utils import timezone

from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, Event
from apps.devices import services
from apps.devices.choices import AuthorityKind, DeviceState
from apps.devices.device_views import EnrollSerializer
from apps.devices.enrollment import Enrollment
from apps.devices.enrollment_guard import Refused
from apps.devices.enrollment_records import EnrollmentRequest
from apps.devices.models import CertificateAuthority, ClaimToken, Device, DeviceCertificate
from apps.devices.pki import authorities, certs, keys
from apps.profiles import provisioning as templates
from apps.profiles.models import ProfileVersion

from .support import body, chain_verifies, claim_policy, claim_token, enroll, make_profile, new_key

pytestmark = pytest.mark.django_db

# The claim token; the enrollment's savepoint (a transaction outside tests); the device lookup;
# the token's use; the profile version; device_register (two savepoints and their releases, the
# profile hold, the version, the serial check, the insert, its audit row and event); the
# provisioning templates; one UPDATE (inventory, last seen, provisioning); the CA lookup
# (intermediate and root in one query); the certificate; the enrollment's audit row and event;
# the release.
CLAIM_TOKEN_REGISTRATION = 22
# The claim token; the savepoint; the device lookup; its live certificates, then tokens; the
# quarantine-pickup check; the token's use; the activation (two savepoints, the lock, the
# transfer guard, the UPDATE, the provisioning hook's read, templates and UPDATE, its audit row,
# event and event delivery, two releases); the device re-read; one UPDATE; the CA lookup; the
# certificate; audit and event; the release.
ESCROW_MATCH = 27


@pytest.fixture
def acme_batch(tree):
    """Acme's sensor profile with a provisioning template, a claim-token policy landing
    devices in Retail, a token, and Retail's CA made ahead (as after its first enrollment)."""
    profile = make_profile(tree["acme"], interval=30)
    templates.template_create(
        actor=SYSTEM,
        organization=tree["acme"],
        name="Sensor defaults",
        profile=profile,
        configuration={"report_interval_s": 30},
    )
    policy = claim_policy(tree["acme"], profile, target_organization=tree["retail"], name="Batch")
    authorities.intermediate(tree["retail"])
    authorities.intermediate(tree["store"])
    return profile, policy, claim_token(policy, max_uses=5)


def test_a_claim_token_registration_stays_within_its_statement_budget(
    tree, acme_batch, django_assert_num_queries
):
    _, policy, token = acme_batch
    request = body("SN-1", token=token, key=new_key())
    with django_assert_num_queries(CLAIM_TOKEN_REGISTRATION):
        response = enroll(request)
    assert response.status_code == 201, response.content
    device = Device.objects.get(serial="SN-1")
    data = response.json()
    assert (device.state, device.organization, device.last_seen_at is not None) == (
        DeviceState.ACTIVE,
        tree["retail"],
        True,
    )
    assert device.provisioning["transition"] == "enroll"
    assert device.provisioning["configuration"] == {"report_interval_s": 30}
    assert data["configuration"] == {"report_interval_s": 30}
    assert data["ca_certificate"] == authorities.root_certificate_pem()
    assert chain_verifies(data["certificate"], data["certificate_chain"], data["ca_certificate"])
    assert DeviceCertificate.objects.get(device=device).certificate_pem == data["certificate"]
    assert list(
        AuditLog.objects.filter(object_id=str(device.pk))
        .order_by("created_at", "id")
        .values_list("action", flat=True)
    ) == ["device.register", "device.enroll"]
    assert list(
        Event.objects.filter(subject_id=str(device.pk))
        .order_by("created_at", "id")
        .values_list("type", flat=True)
    ) == ["device.registered", "device.enrolled"]
    assert ClaimToken.objects.get(policy=policy).uses == 1


def test_an_escrow_device_matched_by_serial_stays_within_its_statement_budget(
    tree, acme_batch, django_assert_num_queries
):
    profile, policy, token = acme_batch
    device = services.device_register(
        actor=SYSTEM,
        organization=tree["store"],
        profile_version=ProfileVersion.objects.get(profile=profile),
        serial="SN-2",
    )
    request = body("SN-2", token=token, key=new_key())
    with django_assert_num_queries(ESCROW_MATCH):
        response = enroll(request)
    assert response.status_code == 200, response.content
    device.refresh_from_db()
    data = response.json()
    assert (data["device_id"], data["state"], device.state) == (
        str(device.pk),
        "active",
        DeviceState.ACTIVE,
    )
    assert (device.provisioning["transition"], data["configuration"]) == (
        "activate",
        {"report_interval_s": 30},
    )
    assert chain_verifies(data["certificate"], data["certificate_chain"], data["ca_certificate"])
    assert list(
        AuditLog.objects.filter(object_id=str(device.pk))
        .order_by("created_at", "id")
        .values_list("action", flat=True)
    ) == ["device.register", "device.transition", "device.enroll"]
    assert ClaimToken.objects.get(policy=policy).uses == 1


# --- the signer cache --------------------------------------------------------------------------


def issuer_of(pem: str) -> x509.Certificate:
    """The CA certificate right after the leaf in an enrollment's chain."""
    return x509.load_pem_x509_certificates(pem.encode())[1]


def test_the_signer_is_cached_until_the_organizations_intermediate_ca_is_replaced(tree, acme_batch):
    _, _, token = acme_batch
    first = authorities.intermediate(tree["retail"])
    assert authorities.intermediate(tree["retail"]).key is first.key  # cached: one decryption
    before = enroll(body("SN-1", token=token, key=new_key())).json()
    assert issuer_of(before["certificate_chain"]) == first.certificate

    CertificateAuthority.objects.filter(pk=first.authority.pk).update(revoked_at=timezone.now())
    after = enroll(body("SN-2", token=token, key=new_key()))
    assert after.status_code == 201, after.content
    replacement = CertificateAuthority.objects.get(
        organization=tree["retail"], kind=AuthorityKind.INTERMEDIATE, revoked_at=None
    )
    data = after.json()
    leaf = certs.load_pem(data["certificate"])
    assert replacement.pk != first.authority.pk
    assert issuer_of(data["certificate_chain"]) == certs.load_pem(replacement.certificate_pem)
    leaf.verify_directly_issued_by(certs.load_pem(replacement.certificate_pem))
    with pytest.raises(InvalidSignature):  # same name as the old CA, not its key
        leaf.verify_directly_issued_by(first.certificate)
    assert DeviceCertificate.objects.get(device__serial="SN-2").issuer_id == replacement.pk


def test_a_ca_changed_in_place_is_never_signed_with_its_cached_key(tree, acme_batch):
    _, _, token = acme_batch
    cached = authorities.intermediate(tree["retail"])
    root = authorities.root()
    key = keys.generate()
    rotated = authorities.ca_certificate(
        cached.certificate.subject, key.public_key(), root.certificate.subject, root.key, 30
    )
    # a bare UPDATE (updated_at unchanged): the fingerprint alone must miss the cache
    CertificateAuthority.objects.filter(pk=cached.authority.pk).update(
        certificate_pem=certs.to_pem(rotated),
        key_encrypted=keys.encrypt(key),
        fingerprint=certs.fingerprint(rotated),
    )

    response = enroll(body("SN-1", token=token, key=new_key()))
    assert response.status_code == 201, response.content
    data = response.json()
    leaf = certs.load_pem(data["certificate"])
    leaf.verify_directly_issued_by(rotated)
    assert issuer_of(data["certificate_chain"]) == rotated
    assert authorities.intermediate(tree["retail"]).key is not cached.key
    assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)


def test_the_cache_holds_at_most_its_size_least_recently_used_out():
    cache = authorities.SignerCache(2)
    cache.put("a", "A")  # type: ignore[arg-type]
    cache.put("b", "B")  # type: ignore[arg-type]
    assert cache.get("a") == "A"  # "a" is now the most recent
    cache.put("c", "C")  # type: ignore[arg-type]
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == ("A", None, "C", 2)


# --- the claim token's use, taken last ---------------------------------------------------------


def request_for(data: dict[str, Any]) -> EnrollmentRequest:
    serializer = EnrollSerializer(data=data)
    assert serializer.is_valid(), serializer.errors
    return serializer.to_request("192.0.2.1")


@pytest.mark.django_db(transaction=True)
def test_two_devices_racing_for_a_tokens_last_use_get_one_enrollment(tree):
    """Both pass ``check()`` with one use left; the use is taken at the end of ``execute()``,
    where the conditional UPDATE lets exactly one through."""
    profile = make_profile(tree["acme"])
    policy = claim_policy(tree["acme"], profile)
    token = claim_token(policy, max_uses=1)
    flows = [Enrollment(request_for(body(f"SN-{n}", token=token, key=new_key()))) for n in (1, 2)]
    both_checked = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def enroll_one(flow: Enrollment) -> None:
        try:
            flow.check()
            both_checked.wait(timeout=30)
            outcomes[flow.request.serial] = flow.execute().outcome
        except Refused as refused:
            outcomes[flow.request.serial] = refused.code
        finally:
            connection.close()

    threads = [threading.Thread(target=enroll_one, args=(flow,)) for flow in flows]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes.values()) == ["claim_token_used_up", "registered"]
    assert ClaimToken.objects.get(policy=policy).uses == 1
    enrolled = [serial for serial, outcome in outcomes.items() if outcome == "registered"]
    assert list(Device.objects.values_list("serial", flat=True)) == enrolled
    assert DeviceCertificate.objects.count() == 1
