"""Bring your own CA: an organization registers the CA that signs its devices' factory
certificates, proving it holds the CA's private key, and devices presenting certificates from it
are recognised at enrollment.

Registration follows AWS IoT's proof of possession:

1. ``registration_start`` creates a pending ``CertificateAuthority`` (kind ``external``) with a
   random registration code.
2. The organization signs a *verification certificate* whose CN is that code with its CA key
   (``docs/pki.md`` gives the openssl commands) and uploads it with the CA certificate.
3. ``registration_complete`` checks the CA certificate (a CA by its basic constraints, valid now,
   a strong key, not SHA-1/MD5 signed, not registered yet) and that the verification certificate
   carries the code and is signed by the CA's key; the row is then verified.

``recognise`` is what enrollment asks: is this presented chain (leaf first) from one of the
verified, unrevoked registered CAs of these organizations?
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.core import audit, events
from apps.core.actors import Actor

from ..choices import AuthorityKind, CertificateKind, CredentialStatus
from ..models_pki import CertificateAuthority, DeviceCertificate
from . import certs, keys

if TYPE_CHECKING:
    from apps.accounts.models import Organization

REGISTRATION_TTL = dt.timedelta(days=7)
CLOCK_SKEW = dt.timedelta(minutes=5)
MAX_PEM_BYTES = 65_536
MAX_CHAIN_DEPTH = 4  # leaf + up to three intermediates below the registered CA
WEAK_HASHES = frozenset({"sha1", "md5"})
PENDING_PREFIX = "pending-"  # fingerprint placeholder of a pending registration (unique column)


# --- registration ------------------------------------------------------------------------------


def _require(actor: Actor, permission: str, organization_path: str) -> None:
    if not actor.has_perm(permission, organization_path):
        raise PermissionDenied


@transaction.atomic
def registration_start(
    *, actor: Actor, organization: Organization, name: str
) -> CertificateAuthority:
    """Start registering a CA for ``organization``: a pending row carrying a fresh registration
    code, valid for ``REGISTRATION_TTL``. The caller signs a certificate with CN = the code."""
    _require(actor, "certificateauthority.add", organization.path)
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Required."})
    now = timezone.now()
    authority = CertificateAuthority.objects.create(
        organization=organization,
        kind=AuthorityKind.EXTERNAL,
        name=name[:200],
        certificate_pem="",
        fingerprint=PENDING_PREFIX + secrets.token_hex(16),
        subject="",
        not_before=now,
        not_after=now,
        verification_code=secrets.token_hex(20),
    )
    audit.record(
        actor=actor,
        action="certificateauthority.registration_start",
        obj=authority,
        changes={"name": name, "kind": AuthorityKind.EXTERNAL},
    )
    return authority


def is_pending(authority: CertificateAuthority) -> bool:
    return (
        authority.kind == AuthorityKind.EXTERNAL
        and authority.verified_at is None
        and authority.revoked_at is None
    )


def registration_expires_at(authority: CertificateAuthority) -> dt.datetime:
    return authority.created_at + REGISTRATION_TTL


STATUSES = ("pending", "active", "expired", "revoked")


def authority_status(authority: CertificateAuthority, now: dt.datetime | None = None) -> str:
    """``pending`` (registration not verified), ``active``, ``expired`` or ``revoked``."""
    if authority.revoked_at is not None:
        return "revoked"
    if authority.verified_at is None:
        return "pending"
    return "expired" if authority.not_after <= (now or timezone.now()) else "active"


def _pem_certificate(pem: Any, field: str) -> x509.Certificate:
    if not isinstance(pem, str) or not pem.strip():
        raise ValidationError({field: "Required: a PEM certificate."})
    if len(pem) > MAX_PEM_BYTES:
        raise ValidationError({field: f"Too large (at most {MAX_PEM_BYTES} bytes)."})
    try:
        found = certs.load_chain(pem)
    except ValueError:
        raise ValidationError({field: "Not a PEM certificate."}) from None
    if len(found) != 1:
        raise ValidationError({field: "Exactly one certificate, please."})
    return found[0]


def ca_problem(certificate: x509.Certificate, now: dt.datetime) -> str:
    """Why ``certificate`` cannot be registered as a CA, or "" when it can."""
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return "Not a CA certificate: it has no basic constraints extension."
    if not constraints.ca:
        return "Not a CA certificate: its basic constraints say CA:FALSE."
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_cert_sign:
        return "Its key usage does not allow signing certificates (keyCertSign)."
    return validity_problem(certificate, now) or strength_problem(certificate)


def validity_problem(certificate: x509.Certificate, now: dt.datetime) -> str:
    if certificate.not_valid_after_utc <= now:
        return f"Expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC."
    if certificate.not_valid_before_utc > now + CLOCK_SKEW:
        return f"Not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC."
    return ""


def strength_problem(certificate: x509.Certificate) -> str:
    weakness = keys.weakness(certificate.public_key())
    if weakness:
        return f"Weak key: {weakness}"
    digest = certificate.signature_hash_algorithm
    if digest is not None and digest.name in WEAK_HASHES:
        return f"Signed with {digest.name.upper()}, which is no longer accepted."
    return ""


def _verification_problem(
    verification: x509.Certificate, ca: x509.Certificate, code: str, now: dt.datetime
) -> str:
    if certs.common_name(verification.subject) != code:
        return "Its CN must be the registration code."
    try:
        verification.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return "It is not signed by the CA certificate's key."
    return validity_problem(verification, now)


def _check_pending(authority: CertificateAuthority, now: dt.datetime) -> None:
    if not is_pending(authority):
        raise ValidationError({"state": "This registration is not pending."})
    if registration_expires_at(authority) <= now:
        raise ValidationError(
            {"state": "The registration code has expired; start a new registration."}
        )


@transaction.atomic
def registration_complete(
    *,
    actor: Actor,
    authority: CertificateAuthority,
    certificate_pem: Any,
    verification_certificate_pem: Any,
) -> CertificateAuthority:
    """Verify a pending registration: the CA certificate and the proof of possession (a
    certificate with CN = the registration code signed by the CA key). Refusals name the field."""
    authority = CertificateAuthority.objects.select_for_update().get(pk=authority.pk)
    organization_path = authority.organization.path if authority.organization else ""
    _require(actor, "certificateauthority.add", organization_path)
    now = timezone.now()
    _check_pending(authority, now)
    ca = _pem_certificate(certificate_pem, "certificate")
    problem = ca_problem(ca, now)
    if problem:
        raise ValidationError({"certificate": problem})
    facts = certs.facts(ca)
    if CertificateAuthority.objects.filter(fingerprint=facts.fingerprint).exists():
        raise ValidationError({"certificate": "This CA certificate is already registered."})
    verification = _pem_certificate(verification_certificate_pem, "verification_certificate")
    problem = _verification_problem(verification, ca, authority.verification_code, now)
    if problem:
        raise ValidationError({"verification_certificate": problem})
    _store(authority, ca, facts, now)
    audit.record(
        actor=actor,
        action="certificateauthority.register",
        obj=authority,
        changes={
            "fingerprint": facts.fingerprint,
            "subject": facts.subject,
            "not_after": facts.not_after,
            "verified_at": [None, now],
        },
    )
    events.emit(
        "certificate_authority.registered",
        organization_id=authority.organization_id,
        payload={"id": str(authority.pk), "fingerprint": facts.fingerprint},
        subject=authority,
    )
    return authority


def _store(
    authority: CertificateAuthority, ca: x509.Certificate, facts: certs.Facts, now: dt.datetime
) -> None:
    # a CA without the extension is still matched on its key identifier, as OpenSSL computes it
    identifier = certs.subject_key_identifier(ca) or (
        x509.SubjectKeyIdentifier.from_public_key(ca.public_key()).digest.hex()  # type: ignore[arg-type]
    )
    authority.certificate_pem = certs.to_pem(ca)
    authority.fingerprint = facts.fingerprint
    authority.subject = facts.subject
    authority.subject_key_identifier = identifier
    authority.not_before, authority.not_after = facts.not_before, facts.not_after
    authority.verified_at = now
    try:
        with transaction.atomic():
            authority.save()
    except IntegrityError:  # registered concurrently by someone else
        raise ValidationError(
            {"certificate": "This CA certificate is already registered."}
        ) from None


@transaction.atomic
def authority_revoke(
    *, actor: Actor, authority: CertificateAuthority, reason: str = ""
) -> CertificateAuthority:
    """Revoke a registered CA (or cancel a pending registration): its devices' factory
    certificates are no longer recognised, and are marked revoked (set-based). The platform's
    own root and intermediates are not revoked here."""
    authority = CertificateAuthority.objects.select_for_update().get(pk=authority.pk)
    organization_path = authority.organization.path if authority.organization else ""
    _require(actor, "certificateauthority.delete", organization_path)
    if authority.kind != AuthorityKind.EXTERNAL:
        raise ValidationError({"kind": "Only registered (bring your own) CAs can be revoked."})
    if authority.revoked_at is not None:
        raise ValidationError({"state": "This CA is already revoked."})
    now = timezone.now()
    authority.revoked_at = now
    authority.save(update_fields=["revoked_at", "updated_at"])
    factory = DeviceCertificate.objects.filter(issuer=authority).exclude(
        status=CredentialStatus.REVOKED
    )
    revoked = factory.update(
        status=CredentialStatus.REVOKED,
        revoked_at=now,
        revocation_reason="ca_revoked",
        updated_at=now,
    )
    audit.record(
        actor=actor,
        action="certificateauthority.revoke",
        obj=authority,
        changes={"revoked_at": [None, now], "reason": reason, "certificates_revoked": revoked},
    )
    events.emit(
        "certificate_authority.revoked",
        organization_id=authority.organization_id,
        payload={"id": str(authority.pk), "certificates_revoked": revoked},
        subject=authority,
    )
    return authority


# --- recognising a presented chain -------------------------------------------------------------


@dataclass(frozen=True)
class Recognised:
    """A device certificate chain traced to a verified registered CA."""

    authority: CertificateAuthority
    leaf: x509.Certificate
    facts: certs.Facts


def recognise(
    chain_pem: str,
    *,
    organization_ids: list[uuid.UUID] | None = None,
    field: str = "factory_certificate",
) -> Recognised:
    """The registered CA (verified, not revoked, of ``organization_ids`` when given) that issued
    the chain's leaf, directly or through intermediates presented in the chain. Checks every
    signature and validity period, and that the leaf is not a revoked credential of ours.
    ``ValidationError`` naming ``field`` with the reason otherwise."""
    chain = _parse_chain(chain_pem, field)
    leaf, now = chain[0], timezone.now()
    problem = validity_problem(leaf, now) or _leaf_problem(leaf)
    if problem:
        raise ValidationError({field: f"The device certificate is refused: {problem}"})
    current, presented = leaf, chain[1:]
    for _ in range(MAX_CHAIN_DEPTH):
        authority = _registered_issuer(current, organization_ids, now, field)
        if authority is not None:
            return _recognised(authority, leaf, field)
        current = _presented_issuer(current, presented, now, field)
    raise ValidationError({field: "The certificate chain is too long."})


def _parse_chain(chain_pem: Any, field: str) -> list[x509.Certificate]:
    if not isinstance(chain_pem, str) or not chain_pem.strip():
        raise ValidationError({field: "Required: a PEM certificate chain, device first."})
    if len(chain_pem) > MAX_PEM_BYTES:
        raise ValidationError({field: f"Too large (at most {MAX_PEM_BYTES} bytes)."})
    try:
        return certs.load_chain(chain_pem)
    except ValueError:
        raise ValidationError({field: "Not a PEM certificate chain."}) from None


def _leaf_problem(leaf: x509.Certificate) -> str:
    try:
        if leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "it is a CA certificate, not a device's."
    except x509.ExtensionNotFound:
        pass
    return strength_problem(leaf)


def _candidates(
    certificate: x509.Certificate, organization_ids: list[uuid.UUID] | None
) -> list[CertificateAuthority]:
    issuer = certificate.issuer.rfc4514_string()[:500]
    identifier = certs.authority_key_identifier(certificate)
    match = (
        Q(subject=issuer) | Q(subject_key_identifier=identifier)
        if identifier
        else Q(subject=issuer)
    )
    found = CertificateAuthority.objects.filter(
        match, kind=AuthorityKind.EXTERNAL, verified_at__isnull=False, revoked_at=None
    )
    if organization_ids is not None:
        found = found.filter(organization_id__in=organization_ids)
    return list(found.order_by("id")[:10])


def _registered_issuer(
    certificate: x509.Certificate,
    organization_ids: list[uuid.UUID] | None,
    now: dt.datetime,
    field: str,
) -> CertificateAuthority | None:
    for authority in _candidates(certificate, organization_ids):
        ca = certs.load_pem(authority.certificate_pem)
        if not _signed_by(certificate, ca):
            continue
        problem = validity_problem(ca, now)
        if problem:
            raise ValidationError({field: f"The registered CA {authority.name!r}: {problem}"})
        return authority
    return None


def _presented_issuer(
    certificate: x509.Certificate, presented: list[x509.Certificate], now: dt.datetime, field: str
) -> x509.Certificate:
    """The intermediate of the presented chain that signed ``certificate``; refuses otherwise."""
    for candidate in presented:
        if _signed_by(certificate, candidate):
            problem = ca_problem(candidate, now)
            if problem:
                raise ValidationError({field: f"An intermediate is refused: {problem}"})
            return candidate
    raise ValidationError(
        {field: "Not issued by a verified certificate authority registered here."}
    )


def _signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _recognised(authority: CertificateAuthority, leaf: x509.Certificate, field: str) -> Recognised:
    facts = certs.facts(leaf)
    revoked = DeviceCertificate.objects.filter(
        fingerprint=facts.fingerprint, kind=CertificateKind.FACTORY, status=CredentialStatus.REVOKED
    )
    if revoked.exists():
        raise ValidationError({field: "This device certificate has been revoked."})
    return Recognised(authority=authority, leaf=leaf, facts=facts)
