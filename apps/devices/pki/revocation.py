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
from django.db.models import Count, F, Max
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
    CRL number; stored on the row with what it lists and when it needs signing again."""
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
        builder, count, latest = _with_revoked(builder, locked)
        signed = builder.sign(signing.key, hashes.SHA256())
        locked.crl_number, locked.crl_updated_at = number, now
        locked.crl_pem = signed.public_bytes(serialization.Encoding.PEM).decode()
        locked.crl_revocations = revocations_state(count, latest)
        locked.crl_refresh_at = halfway(signed)
        locked.save(update_fields=[*CRL_FIELDS, "updated_at"])
        return locked.crl_pem


def _with_revoked(
    builder: x509.CertificateRevocationListBuilder, authority: CertificateAuthority
) -> tuple[x509.CertificateRevocationListBuilder, int, dt.datetime | None]:
    """``builder`` with an entry per certificate ``authority`` revoked, and how many there
    were and the latest revocation time (``revocations_state``)."""
    revoked = DeviceCertificate.objects.filter(
        issuer=authority, status=CredentialStatus.REVOKED
    ).values_list("serial_number", "revoked_at", "revocation_reason")
    count, latest = 0, None
    for serial, when, reason in revoked.iterator(chunk_size=5000):
        entry = x509.RevokedCertificateBuilder().serial_number(int(serial, 16))
        entry = entry.revocation_date(when)
        if reason in REASONS:
            entry = entry.add_extension(x509.CRLReason(REASONS[reason]), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
        count, latest = count + 1, max(latest or when, when)
    return builder, count, latest


CRL_FIELDS = ("crl_number", "crl_pem", "crl_updated_at", "crl_revocations", "crl_refresh_at")
NO_REVOCATIONS = "0:"


def revocations_state(count: int, latest: dt.datetime | None) -> str:
    """What a CRL lists, in short: how many revoked certificates and the latest revocation.
    Revocation is final (a revoked certificate is never un-revoked nor deleted), so any new
    revocation changes the count."""
    return f"{count}:{latest.timestamp():.6f}" if latest is not None else NO_REVOCATIONS


def halfway(signed: x509.CertificateRevocationList) -> dt.datetime:
    """When ``signed`` is half way through its validity: computed the way ``broker.sync``
    plans its next refresh, from the CRL's own (whole-second) times, so that the refresh it
    plans finds this CRL due."""
    last, following = signed.last_update_utc, signed.next_update_utc
    if following is None:
        return last
    return last + (following - last) / 2


def current_states() -> dict[uuid.UUID, str]:
    """``revocations_state`` of every live intermediate with revoked certificates, in one
    grouped query (``devices_cert_revoked``, the partial index of revoked certificates)."""
    rows = (
        DeviceCertificate.objects.filter(
            status=CredentialStatus.REVOKED,
            issuer__kind=AuthorityKind.INTERMEDIATE,
            issuer__revoked_at=None,
        )
        .values("issuer_id")
        .annotate(count=Count("id"), latest=Max("revoked_at"))
        .order_by()
    )
    return {row["issuer_id"]: revocations_state(row["count"], row["latest"]) for row in rows}


def is_current(authority: CertificateAuthority, state: str, now: dt.datetime) -> bool:
    """Whether ``authority``'s stored CRL lists exactly the revocations ``state`` describes and
    is not yet half way through its validity."""
    return bool(
        authority.crl_pem
        and authority.crl_revocations == state
        and authority.crl_refresh_at is not None
        and now < authority.crl_refresh_at
    )


def crl_bundle() -> str:
    """The CRLs of every intermediate, concatenated: the broker's ``crlfile``. The broker checks
    the leaf's issuer CRL (OpenSSL ``X509_V_FLAG_CRL_CHECK``), so every issuing CA must have
    one in the file, even an empty one.

    A CA's stored CRL is reused, byte for byte, while it lists the CA's current revocations
    and is not half way through its validity; only the others are signed again (``crl``), so
    a sync after one revocation signs one CRL, not one per organization."""
    authorities.root()  # a fresh installation has its root before its first CRL
    intermediates = CertificateAuthority.objects.filter(
        kind=AuthorityKind.INTERMEDIATE, revoked_at=None
    ).only("id", "crl_pem", "crl_revocations", "crl_refresh_at")
    states = current_states()
    now = timezone.now()
    parts = [
        authority.crl_pem
        if is_current(authority, states.get(authority.pk, NO_REVOCATIONS), now)
        else crl(authority)
        for authority in intermediates.order_by("id")
    ]
    return "".join(parts)
