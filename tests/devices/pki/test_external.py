"""Bring your own CA: registration with proof of possession, each refusal, revocation, and
recognising a presented device chain."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, Event
from apps.devices.models_pki import CertificateAuthority, DeviceCertificate
from apps.devices.pki import certs, external

from .support import (
    LEGACY_SHA1_CA,
    ca_usage,
    certificate,
    chain,
    factory_certificate,
    fleet_device,
    make_ca,
    pem,
    register_ca,
    rsa_key,
)

pytestmark = pytest.mark.django_db
NOW = timezone.now


def start(organization, label="Factory CA"):
    return external.registration_start(actor=SYSTEM, organization=organization, name=label)


def complete(pending, ca, proof=None):
    proof = proof or certificate(pending.verification_code, issuer=ca)[0]
    return external.registration_complete(
        actor=SYSTEM,
        authority=pending,
        certificate_pem=pem(ca[0]),
        verification_certificate_pem=pem(proof),
    )


def refused(pending, ca, proof=None) -> dict:
    with pytest.raises(ValidationError) as caught:
        complete(pending, ca, proof)
    pending.refresh_from_db()
    assert (pending.verified_at, pending.certificate_pem) == (None, "")
    return caught.value.message_dict


# --- registration ------------------------------------------------------------------------------


def test_registration_verifies_the_proof_and_records_the_ca(tree):
    pending = start(tree["acme"])
    assert (pending.kind, pending.organization_id, len(pending.verification_code)) == (
        "external",
        tree["acme"].pk,
        40,
    )
    assert external.authority_status(pending) == "pending"
    ca = make_ca()
    registered = complete(pending, ca)
    registered.refresh_from_db()
    assert external.authority_status(registered) == "active"
    assert (registered.fingerprint, registered.subject) == (
        certs.fingerprint(ca[0]),
        "CN=Acme factory CA",
    )
    assert registered.subject_key_identifier == certs.subject_key_identifier(ca[0])
    assert registered.key_encrypted is None  # we never hold a registered CA's key
    assert registered.verified_at is not None
    actions = list(AuditLog.objects.filter(object_id=str(pending.pk)).order_by("created_at", "id"))
    assert [(row.action, row.organization_id) for row in actions] == [
        ("certificateauthority.registration_start", tree["acme"].pk),
        ("certificateauthority.register", tree["acme"].pk),
    ]
    event = Event.objects.get(type="certificate_authority.registered")
    assert event.payload == {"id": str(pending.pk), "fingerprint": registered.fingerprint}


def test_a_ca_without_basic_constraints_or_with_ca_false_is_refused(tree):
    assert refused(start(tree["acme"]), certificate("Plain", ca=None)) == {
        "certificate": ["Not a CA certificate: it has no basic constraints extension."]
    }
    assert refused(start(tree["acme"]), certificate("Leaf", ca=False)) == {
        "certificate": ["Not a CA certificate: its basic constraints say CA:FALSE."]
    }


def test_an_expired_ca_is_refused(tree):
    ca = make_ca(
        not_before=dt.datetime(2019, 1, 1, tzinfo=dt.UTC),
        not_after=dt.datetime(2020, 1, 2, tzinfo=dt.UTC),
    )
    assert refused(start(tree["acme"]), ca) == {"certificate": ["Expired on 2020-01-02 00:00 UTC."]}


def test_a_ca_with_a_weak_key_is_refused(tree):
    assert refused(start(tree["acme"]), make_ca(key=rsa_key(1024))) == {
        "certificate": ["Weak key: RSA keys must have at least 2048 bits (this one has 1024)."]
    }


def test_a_ca_signed_with_sha1_is_refused(tree):
    legacy = (certs.load_pem(LEGACY_SHA1_CA), None)
    assert refused(start(tree["acme"]), legacy, proof=legacy[0]) == {
        "certificate": ["Signed with SHA1, which is no longer accepted."]
    }


def test_a_ca_whose_key_usage_forbids_signing_certificates_is_refused(tree):
    ca = certificate("No keyCertSign", ca=True, usage=ca_usage(cert_sign=False))
    assert refused(start(tree["acme"]), ca) == {
        "certificate": ["Its key usage does not allow signing certificates (keyCertSign)."]
    }
    # without a key usage extension at all, certificate signing is allowed (RFC 5280)
    bare = certificate("No key usage", ca=True, key_usage=False)
    assert complete(start(tree["acme"]), bare).verified_at is not None


def test_the_same_ca_cannot_be_registered_twice(tree):
    ca = make_ca()
    complete(start(tree["acme"]), ca)
    assert refused(start(tree["globex"]), ca) == {
        "certificate": ["This CA certificate is already registered."]
    }
    assert CertificateAuthority.objects.filter(verified_at__isnull=False).count() == 1


def test_the_proof_must_carry_the_code_and_be_signed_by_the_ca(tree):
    ca = make_ca()
    pending = start(tree["acme"])
    wrong_code, _ = certificate("not-the-code", issuer=ca)
    assert refused(pending, ca, wrong_code) == {
        "verification_certificate": ["Its CN must be the registration code."]
    }
    other_ca = make_ca("Someone else's CA")
    forged, _ = certificate(pending.verification_code, issuer=other_ca)
    assert refused(pending, ca, forged) == {
        "verification_certificate": ["It is not signed by the CA certificate's key."]
    }


def test_bad_pem_is_refused_naming_the_field(tree):
    pending = start(tree["acme"])
    with pytest.raises(ValidationError) as caught:
        external.registration_complete(
            actor=SYSTEM,
            authority=pending,
            certificate_pem="nope",
            verification_certificate_pem="nope",
        )
    assert caught.value.message_dict == {"certificate": ["Not a PEM certificate."]}


def test_an_expired_code_or_a_finished_registration_is_refused(tree):
    ca = make_ca()
    stale = start(tree["acme"])
    CertificateAuthority.objects.filter(pk=stale.pk).update(
        created_at=NOW() - external.REGISTRATION_TTL - dt.timedelta(minutes=1)
    )
    assert refused(stale, ca) == {
        "state": ["The registration code has expired; start a new registration."]
    }
    done = complete(start(tree["acme"]), ca)
    with pytest.raises(ValidationError) as caught:
        complete(done, make_ca("Another"))
    assert caught.value.message_dict == {"state": ["This registration is not pending."]}


def test_revoking_a_registered_ca_revokes_its_factory_certificates(tree):
    ca = make_ca()
    authority = register_ca(tree["acme"], ca)
    device = fleet_device(tree["acme"])
    leaf, _ = certificate("SN-1", issuer=ca)
    row = factory_certificate(device, authority, leaf)
    external.authority_revoke(actor=SYSTEM, authority=authority, reason="factory closed")
    authority.refresh_from_db()
    row.refresh_from_db()
    assert external.authority_status(authority) == "revoked"
    assert (row.status, row.revocation_reason) == ("revoked", "ca_revoked")
    assert AuditLog.objects.get(action="certificateauthority.revoke").changes["reason"] == (
        "factory closed"
    )
    with pytest.raises(ValidationError) as caught:
        external.authority_revoke(actor=SYSTEM, authority=authority)
    assert caught.value.message_dict == {"state": ["This CA is already revoked."]}


def test_the_platforms_own_cas_are_not_revoked_here(tree):
    from apps.devices.pki import authorities

    intermediate = authorities.intermediate(tree["acme"]).authority
    with pytest.raises(ValidationError) as caught:
        external.authority_revoke(actor=SYSTEM, authority=intermediate)
    assert caught.value.message_dict == {
        "kind": ["Only registered (bring your own) CAs can be revoked."]
    }


# --- recognise ---------------------------------------------------------------------------------


def not_recognised(chain_pem: str, **options) -> str:
    with pytest.raises(ValidationError) as caught:
        external.recognise(chain_pem, **options)
    return caught.value.message_dict["factory_certificate"][0]


def test_a_chain_from_a_verified_ca_is_recognised(tree):
    ca = make_ca()
    authority = register_ca(tree["acme"], ca)
    leaf, _ = certificate("SN-1", issuer=ca)
    found = external.recognise(pem(leaf), organization_ids=[tree["acme"].pk])
    assert (found.authority.pk, found.leaf, found.facts.fingerprint) == (
        authority.pk,
        leaf,
        certs.fingerprint(leaf),
    )


def test_a_chain_through_a_presented_intermediate_is_recognised(tree):
    root = make_ca("Acme root")
    authority = register_ca(tree["acme"], root)
    line = certificate("Acme line 4", ca=True, issuer=root)
    leaf, _ = certificate("SN-2", issuer=line)
    assert external.recognise(chain(leaf, line[0])).authority.pk == authority.pk
    assert not_recognised(pem(leaf)) == (
        "Not issued by a verified certificate authority registered here."
    )


def test_unknown_unverified_revoked_and_foreign_cas_are_not_recognised(tree):
    unknown = make_ca("Unknown")
    leaf, _ = certificate("SN-1", issuer=unknown)
    message = "Not issued by a verified certificate authority registered here."
    assert not_recognised(pem(leaf)) == message

    unverified = make_ca("Unverified")
    facts = certs.facts(unverified[0])
    CertificateAuthority.objects.create(
        organization=tree["acme"],
        kind="external",
        name="never verified",
        certificate_pem=pem(unverified[0]),
        fingerprint=facts.fingerprint,
        subject=facts.subject,
        subject_key_identifier=certs.subject_key_identifier(unverified[0]),
        not_before=facts.not_before,
        not_after=facts.not_after,
    )
    assert not_recognised(pem(certificate("SN-2", issuer=unverified)[0])) == message

    revoked_ca = make_ca("Revoked")
    external.authority_revoke(actor=SYSTEM, authority=register_ca(tree["acme"], revoked_ca))
    assert not_recognised(pem(certificate("SN-3", issuer=revoked_ca)[0])) == message

    globex_ca = make_ca("Globex factory")
    register_ca(tree["globex"], globex_ca)
    theirs = pem(certificate("SN-4", issuer=globex_ca)[0])
    assert not_recognised(theirs, organization_ids=[tree["acme"].pk]) == message
    assert external.recognise(theirs, organization_ids=[tree["globex"].pk]) is not None


def test_expired_certificates_are_not_recognised(tree):
    ca = make_ca()
    register_ca(tree["acme"], ca)
    past = NOW() - dt.timedelta(days=1)
    expired, _ = certificate(
        "SN-1", issuer=ca, not_before=past - dt.timedelta(days=9), not_after=past
    )
    assert not_recognised(pem(expired)).startswith("The device certificate is refused: Expired on")


def test_a_ca_that_expired_after_registration_is_named(tree):
    ca = make_ca()
    authority = register_ca(tree["acme"], ca, label="Old line")
    leaf, _ = certificate("SN-1", issuer=ca)
    CertificateAuthority.objects.filter(pk=authority.pk).update(
        certificate_pem=pem(
            make_ca(
                key=ca[1],
                not_before=NOW() - dt.timedelta(days=30),
                not_after=NOW() - dt.timedelta(days=1),
            )[0]
        )
    )
    assert not_recognised(pem(leaf)).startswith("The registered CA 'Old line': Expired on")


def test_bad_input_and_revoked_factory_certificates_are_refused(tree):
    assert not_recognised("garbage") == "Not a PEM certificate chain."
    assert not_recognised("") == "Required: a PEM certificate chain, device first."
    ca = make_ca()
    assert not_recognised(pem(ca[0])) == (
        "The device certificate is refused: it is a CA certificate, not a device's."
    )
    authority = register_ca(tree["acme"], ca)
    leaf, _ = certificate("SN-1", issuer=ca)
    row = factory_certificate(fleet_device(tree["acme"]), authority, leaf)
    DeviceCertificate.objects.filter(pk=row.pk).update(status="revoked", revoked_at=NOW())
    assert not_recognised(pem(leaf)) == "This device certificate has been revoked."
    with pytest.raises(ValidationError) as caught:
        external.recognise("garbage", field="proof")
    assert caught.value.message_dict == {"proof": ["Not a PEM certificate chain."]}
