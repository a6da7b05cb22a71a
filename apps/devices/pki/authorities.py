"""The CAs the platform signs with: the installation root and one intermediate per organization.

The root comes from configuration (``PKI_ROOT_CERT_FILE``/``PKI_ROOT_KEY_FILE``) or is generated
on first use; either way its key is kept encrypted in the database. Intermediates are created on
first use, signed by the root, valid for ten years; each publishes its own CRL (``revocation``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..choices import AuthorityKind
from ..models_pki import CertificateAuthority
from . import certs, keys

if TYPE_CHECKING:
    from apps.accounts.models import Organization

ROOT_DAYS = 20 * 365
INTERMEDIATE_DAYS = 10 * 365
BACKDATE = dt.timedelta(minutes=5)  # tolerate clocks a little behind ours


@dataclass(frozen=True)
class Signer:
    """A CA ready to sign: its row, its certificate and its private key."""

    authority: CertificateAuthority
    certificate: x509.Certificate
    key: Any

    def chain_pem(self) -> str:
        """This CA's certificate and its parents', up to and including the root."""
        return chain_pem(self.authority)


def chain_pem(authority: CertificateAuthority | None) -> str:
    """``authority``'s certificate and its parents', up to and including the root."""
    parts: list[str] = []
    while authority is not None:
        parts.append(authority.certificate_pem)
        authority = authority.parent
    return "".join(parts)


def signer(authority: CertificateAuthority) -> Signer:
    if authority.key_encrypted is None:
        raise ValueError(f"{authority} has no private key here (a registered CA).")
    return Signer(
        authority, certs.load_pem(authority.certificate_pem), keys.decrypt(authority.key_encrypted)
    )


def root() -> Signer:
    """The installation root, created (or imported from configuration) on first use."""
    found = CertificateAuthority.objects.filter(kind=AuthorityKind.ROOT, revoked_at=None).first()
    if found is None:
        found = _create_root()
    return signer(found)


def root_certificate_pem() -> str:
    return root().authority.certificate_pem


def _create_root() -> CertificateAuthority:
    certificate, key = _configured_root() or _generated_root()
    try:
        with transaction.atomic():
            return _save(AuthorityKind.ROOT, "Fleetops installation root", certificate, key)
    except IntegrityError:  # another process created it first
        return CertificateAuthority.objects.get(kind=AuthorityKind.ROOT, revoked_at=None)


def _configured_root() -> tuple[x509.Certificate, Any] | None:
    if not (settings.PKI_ROOT_CERT_FILE and settings.PKI_ROOT_KEY_FILE):
        return None
    certificate = certs.load_pem(Path(settings.PKI_ROOT_CERT_FILE).read_bytes())
    passphrase = settings.PKI_ROOT_KEY_PASSPHRASE.encode() or None
    key = serialization.load_pem_private_key(
        Path(settings.PKI_ROOT_KEY_FILE).read_bytes(), password=passphrase
    )
    return certificate, key


def _generated_root() -> tuple[x509.Certificate, Any]:
    key = keys.generate()
    subject = certs.name("Fleetops installation root CA", "Fleetops")
    certificate = ca_certificate(subject, key.public_key(), subject, key, ROOT_DAYS, path_length=1)
    return certificate, key


def ca_certificate(
    subject: x509.Name,
    public_key: Any,
    issuer: x509.Name,
    issuer_key: Any,
    days: int,
    path_length: int | None = 0,
) -> x509.Certificate:
    """A CA certificate (basic constraints CA, key usage cert + CRL signing)."""
    now = timezone.now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


def _save(
    kind: str,
    label: str,
    certificate: x509.Certificate,
    key: Any,
    *,
    organization: Organization | None = None,
    parent: CertificateAuthority | None = None,
) -> CertificateAuthority:
    facts = certs.facts(certificate)
    return CertificateAuthority.objects.create(
        organization=organization,
        kind=kind,
        name=label,
        parent=parent,
        certificate_pem=certs.to_pem(certificate),
        key_encrypted=keys.encrypt(key),
        fingerprint=facts.fingerprint,
        subject=facts.subject,
        subject_key_identifier=certs.subject_key_identifier(certificate),
        not_before=facts.not_before,
        not_after=facts.not_after,
        verified_at=timezone.now(),
    )


def intermediate(organization: Organization) -> Signer:
    """The organization's intermediate CA, created under the root on first use."""
    found = CertificateAuthority.objects.filter(
        organization=organization, kind=AuthorityKind.INTERMEDIATE, revoked_at=None
    ).first()
    if found is None:
        found = _create_intermediate(organization)
    return signer(found)


def _create_intermediate(organization: Organization) -> CertificateAuthority:
    from .revocation import bump_broker_state

    parent = root()
    key = keys.generate()
    subject = certs.name(f"{organization.name} devices CA {organization.pk}", "Fleetops")
    certificate = ca_certificate(
        subject, key.public_key(), parent.certificate.subject, parent.key, INTERMEDIATE_DAYS
    )
    try:
        with transaction.atomic():
            created = _save(
                AuthorityKind.INTERMEDIATE,
                f"{organization.name} devices CA",
                certificate,
                key,
                organization=organization,
                parent=parent.authority,
            )
            bump_broker_state()  # the broker needs this CA's CRL before its devices connect
            return created
    except IntegrityError:
        return CertificateAuthority.objects.get(
            organization=organization, kind=AuthorityKind.INTERMEDIATE, revoked_at=None
        )
