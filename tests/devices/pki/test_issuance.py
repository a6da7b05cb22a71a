"""Issuing device certificates from CSRs, the chain up to the root, and the CRLs."""

from __future__ import annotations

import base64

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import verification
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.devices.models_pki import BrokerState, CertificateAuthority
from apps.devices.pki import authorities, certs, issuance, revocation

from .support import csr_pem, ec_key, fleet_device, issue, rsa_key

pytestmark = pytest.mark.django_db


def refusal(pem, expected=("device-1",)) -> dict:
    with pytest.raises(ValidationError) as caught:
        issuance.load_csr(pem, expected_names=expected)
    return caught.value.message_dict


def tampered(pem: str) -> str:
    """The same CSR with one bit of its signature flipped."""
    der = bytearray(x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    body = base64.encodebytes(bytes(der)).decode()
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"


def test_a_csr_that_is_not_pem_is_refused():
    assert refusal("hello") == {"csr": ["Not a PEM certificate signing request."]}
    assert refusal("") == {"csr": ["Required: a PEM certificate signing request."]}


def test_a_csr_whose_signature_does_not_verify_is_refused():
    assert refusal(tampered(csr_pem("device-1"))) == {
        "csr": ["The request's signature does not verify."]
    }


def test_a_csr_with_a_1024_bit_rsa_key_is_refused():
    assert refusal(csr_pem("device-1", key=rsa_key(1024))) == {
        "csr": ["Weak key: RSA keys must have at least 2048 bits (this one has 1024)."]
    }


def test_a_csr_with_the_wrong_common_name_is_refused():
    assert refusal(csr_pem("someone-else")) == {
        "csr": ["The request's CN must be 'device-1' (it is 'someone-else')."]
    }


def test_a_good_csr_is_accepted_and_only_its_key_is_used(tree):
    device = fleet_device(tree["retail"])
    key = ec_key()
    row = issue(device, key=key)
    leaf = certs.load_pem(row.certificate_pem)
    assert certs.common_name(leaf.subject) == str(device.pk)
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    assert (row.status, row.kind, row.key_algorithm, row.key_size, row.signature_hash) == (
        "active",
        "operational",
        "ec",
        256,
        "sha256",
    )


def test_the_issued_chain_verifies_up_to_the_root(tree):
    device = fleet_device(tree["retail"])
    csr = issuance.load_csr(csr_pem(str(device.pk)), expected_names=(str(device.pk),))
    row, chain_pem = issuance.issue(device=device, csr=csr)
    leaf, intermediate, root = certs.load_chain(chain_pem)
    assert root.subject == root.issuer  # the chain ends with the self-signed root
    store = verification.Store([certs.load_pem(authorities.root_certificate_pem())])
    verifier = verification.PolicyBuilder().store(store).build_client_verifier()
    verified = verifier.verify(leaf, [intermediate])
    assert [certs.fingerprint(cert) for cert in verified.chain] == [
        row.fingerprint,
        certs.fingerprint(intermediate),
        certs.fingerprint(root),
    ]
    issuer = CertificateAuthority.objects.get(pk=row.issuer_id)
    assert (issuer.kind, issuer.organization_id, issuer.fingerprint) == (
        "intermediate",
        tree["retail"].pk,
        certs.fingerprint(intermediate),
    )


def test_the_crl_lists_revoked_serials_and_its_number_grows(tree):
    device = fleet_device(tree["retail"])
    kept, revoked = issue(device), issue(device)
    issuer = CertificateAuthority.objects.get(pk=revoked.issuer_id)
    first = x509.load_pem_x509_crl(revocation.crl(issuer).encode())
    before = BrokerState.objects.get(pk=1).version
    revocation.revoke_certificate(revoked, "key_compromise")
    assert BrokerState.objects.get(pk=1).version == before + 1
    second = x509.load_pem_x509_crl(revocation.crl(issuer).encode())

    number = x509.CRLNumber
    assert first.extensions.get_extension_for_class(number).value.crl_number == 1
    assert second.extensions.get_extension_for_class(number).value.crl_number == 2
    assert list(first) == []
    assert [format(entry.serial_number, "x") for entry in second] == [revoked.serial_number]
    entry = second.get_revoked_certificate_by_serial_number(int(revoked.serial_number, 16))
    reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason == x509.ReasonFlags.key_compromise
    assert second.get_revoked_certificate_by_serial_number(int(kept.serial_number, 16)) is None
    signer = certs.load_pem(issuer.certificate_pem)
    assert second.is_signature_valid(signer.public_key())
    assert second.next_update_utc > timezone.now()
    assert isinstance(second.signature_hash_algorithm, hashes.SHA256)


def test_the_bundle_has_one_crl_per_intermediate(tree):
    issue(fleet_device(tree["retail"], "A"))
    issue(fleet_device(tree["hospital"], "B"))
    bundle = revocation.crl_bundle()
    issuers = sorted(
        crl.issuer.rfc4514_string()
        for crl in (
            x509.load_pem_x509_crl(("-----BEGIN X509 CRL-----" + part).encode())
            for part in bundle.split("-----BEGIN X509 CRL-----")[1:]
        )
    )
    assert issuers == sorted(
        CertificateAuthority.objects.filter(kind="intermediate").values_list("subject", flat=True)
    )
    assert len(issuers) == 2
