"""Revocation: mark certificates and tokens revoked, publish each intermediate's CRL, and tell
the broker (``BrokerState`` counter; ``broker_sync`` rewrites its files and reloads it)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ..choices import AuthorityKind, CredentialStatus
from ..models_pki import BrokerState, CertificateAuthority, DeviceCertificate, DeviceToken
from . import authorities


def bump_broker_state() -> None:
    """Tell ``broker_sync`` that the broker's files are stale (in the caller's transaction)."""
    updated = BrokerState.objects.filter(pk=1).update(version=F("version") + 1)
    if not updated:
        BrokerState.objects.get_or_create(pk=1, defaults={"version": 1})


def revoke_for_devices(
    device_ids: Iterable[uuid.UUID], reason: str, *, kinds: Iterable[str] | None = None
) -> tuple[int, int]:
    """Revoke every live certificate (of ``kinds``, every kind when None) and token of
    ``device_ids`` (set-based: two UPDATEs). Returns (certificates, tokens) revoked."""
    ids = list(device_ids)
    now = timezone.now()
    certificates = DeviceCertificate.objects.filter(device_id__in=ids).exclude(
        status=CredentialStatus.REVOKED
    )
    if kinds is not None:
        certificates = certificates.filter(kind__in=list(kinds))
    revoked = certificates.update(
        status=CredentialStatus.REVOKED, revoked_at=now, revocation_reason=reason, updated_at=now
    )
    tokens = DeviceToken.objects.filter(device_id__in=ids, revoked_at=None).update(
        revoked_at=now, updated_at=now
    )
    if revoked or tokens:
        bump_broker_state()
    return revoked, tokens


def revoke_certificate(certificate: DeviceCertificate, reason: str) -> DeviceCertificate:
    """Revoke one certificate (idempotent)."""
    if certificate.status != CredentialStatus.REVOKED:
        certificate.status = CredentialStatus.REVOKED
        certificate.revoked_at = timezone.now()
        certificate.revocation_reason = reason[:32]
        certificate.save(update_fields=["status", "revoked_at", "revocation_reason", "updated_at"])
        bump_broker_state()
    return certificate


REASONS = {
    "key_compromise": x509.ReasonFlags.key_compromise,
    "affiliation_changed": x509.ReasonFlags.affiliation_changed,
    "privilege_withdrawn": x509.ReasonFlags.privilege_withdrawn,
    "superseded": x509.ReasonFlags.superseded,
    "cessation_of_operation": x509.ReasonFlags.cessation_of_operation,
    "decommissioned": x509.ReasonFlags.cessation_of_operation,
    "replaced": x509.ReasonFlags.superseded,
}


def crl(authority: CertificateAuthority) -> str:
    """A fresh CRL (PEM) of ``authority``'s revoked certificates, signed by it, with the next
    CRL number; stored on the row."""
    with transaction.atomic():
        locked = CertificateAuthority.objects.select_for_update().get(pk=authority.pk)
        signing = authorities.signer(locked)
        now = timezone.now()
        number = locked.crl_number + 1
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(signing.certificate.subject)
            .last_update(now - authorities.BACKDATE)
            .next_update(now + dt.timedelta(days=settings.PKI_CRL_DAYS))
            .add_extension(x509.CRLNumber(number), critical=False)
        )
        revoked = DeviceCertificate.objects.filter(
            issuer=locked, status=CredentialStatus.REVOKED
        ).values_list("serial_number", "revoked_at", "revocation_reason")
        for serial, when, reason in revoked.iterator(chunk_size=5000):
            entry = x509.RevokedCertificateBuilder().serial_number(int(serial, 16))
            entry = entry.revocation_date(when)
            if reason in REASONS:
                entry = entry.add_extension(x509.CRLReason(REASONS[reason]), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        pem = builder.sign(signing.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        locked.crl_number, locked.crl_pem, locked.crl_updated_at = number, pem.decode(), now
        locked.save(update_fields=["crl_number", "crl_pem", "crl_updated_at", "updated_at"])
        return locked.crl_pem


def crl_bundle() -> str:
    """The CRLs of every intermediate, concatenated: the broker's ``crlfile``. The broker checks
    the leaf's issuer CRL (OpenSSL ``X509_V_FLAG_CRL_CHECK``), so every issuing CA must have
    one in the file, even an empty one."""
    authorities.root()  # a fresh installation has its root before its first CRL
    parts = [
        crl(authority)
        for authority in CertificateAuthority.objects.filter(
            kind=AuthorityKind.INTERMEDIATE, revoked_at=None
        ).order_by("id")
    ]
    return "".join(parts)
