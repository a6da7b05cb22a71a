"""The certificate audit: what in the fleet's credentials needs someone's attention.

Findings, each ``{kind, certificate_id, device_id, detail}``:

- ``expiring``: an active certificate that expires within ``PKI_RENEW_BEFORE_DAYS`` (or has
  already expired without being renewed);
- ``aged``: an active certificate issued more than ``PKI_MAX_AGE_DAYS`` ago (rotate it);
- ``revoked_seen``: a revoked certificate seen after its revocation, and a device whose every
  credential is revoked yet was seen after the last revocation (``certificate_id`` empty);
  either means something still connects with what was revoked;
- ``shared``: one certificate (by SHA-256 fingerprint) bound to more than one device;
- ``weak_key``: a live certificate with an RSA key under 2048 bits, an EC key under 256 bits,
  an unsupported key type, or a SHA-1/MD5 signature.

Every kind is one set-based query over the actor's scope (``for_actor``), never a loop over
certificates. The daily task (``pki.tasks``) emits one ``certificates.audit`` event per
organization with findings, carrying only the counts.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Greatest
from django.utils import timezone

from apps.core import events
from apps.core.actors import SYSTEM, Actor
from apps.core.scoping import organization_ids_under

from ..choices import CredentialStatus
from ..models import Device
from ..models_pki import DeviceCertificate, DeviceToken
from .keys import MIN_EC_BITS, MIN_RSA_BITS

KINDS = ("expiring", "aged", "revoked_seen", "shared", "weak_key")
LABELS = {
    "expiring": "expiring",
    "aged": "aged",
    "revoked_seen": "revoked but seen",
    "shared": "shared",
    "weak_key": "weak key",
}
STRONG_ALGORITHMS = ("rsa", "ec", "ed25519", "ed448")
WEAK_HASHES = ("sha1", "md5")
DEFAULT_LIMIT = 1000  # findings per kind


@dataclass(frozen=True)
class Finding:
    kind: str
    certificate_id: uuid.UUID | None
    device_id: uuid.UUID
    detail: str
    organization_id: uuid.UUID
    serial: str  # the device's serial number, for people reading the list

    @property
    def label(self) -> str:
        return LABELS[self.kind]


# --- the conditions ----------------------------------------------------------------------------


def _expiring(now: dt.datetime) -> Q:
    window = dt.timedelta(days=settings.PKI_RENEW_BEFORE_DAYS)
    return Q(status=CredentialStatus.ACTIVE, not_after__lte=now + window)


def _aged(now: dt.datetime) -> Q:
    return Q(
        status=CredentialStatus.ACTIVE,
        not_before__lt=now - dt.timedelta(days=settings.PKI_MAX_AGE_DAYS),
    )


def _revoked_seen(now: dt.datetime) -> Q:
    return Q(status=CredentialStatus.REVOKED, last_seen_at__gt=F("revoked_at"))


def _weak(now: dt.datetime) -> Q:
    weak = (
        Q(key_algorithm="rsa", key_size__lt=MIN_RSA_BITS)
        | Q(key_algorithm="ec", key_size__lt=MIN_EC_BITS)
        | ~Q(key_algorithm__in=STRONG_ALGORITHMS)
        | Q(signature_hash__in=WEAK_HASHES)
    )
    return weak & ~Q(status=CredentialStatus.REVOKED)


def _shared_in(certificates: QuerySet[DeviceCertificate]) -> Q:
    shared = (
        certificates.order_by()
        .values("fingerprint")
        .annotate(devices=Count("device_id", distinct=True))
        .filter(devices__gt=1)
        .values("fingerprint")
    )
    return Q(fingerprint__in=shared)


def _certificate_queries(
    certificates: QuerySet[DeviceCertificate], now: dt.datetime
) -> dict[str, QuerySet[DeviceCertificate]]:
    return {
        "expiring": certificates.filter(_expiring(now)),
        "aged": certificates.filter(_aged(now)),
        "revoked_seen": certificates.filter(_revoked_seen(now)),
        "shared": certificates.filter(_shared_in(certificates)),
        "weak_key": certificates.filter(_weak(now)),
    }


def _silenced_devices(devices: QuerySet[Device]) -> QuerySet[Any]:  # annotated Device rows
    """Devices whose every credential is revoked, seen after the last revocation."""
    revoked_certs = DeviceCertificate.objects.filter(status=CredentialStatus.REVOKED)
    revoked_tokens = DeviceToken.objects.filter(revoked_at__isnull=False)
    live_certs = DeviceCertificate.objects.filter(device=OuterRef("pk")).exclude(
        status=CredentialStatus.REVOKED
    )
    live_tokens = DeviceToken.objects.filter(device=OuterRef("pk"), revoked_at=None)
    last_cert = revoked_certs.filter(device=OuterRef("pk")).order_by().values("device")
    last_token = revoked_tokens.filter(device=OuterRef("pk")).order_by().values("device")
    return (
        devices.filter(
            Q(pk__in=revoked_certs.values("device_id"))
            | Q(pk__in=revoked_tokens.values("device_id")),
            last_seen_at__isnull=False,
        )
        .filter(~Exists(live_certs), ~Exists(live_tokens))
        .annotate(
            last_revoked_at=Greatest(
                Subquery(last_cert.annotate(at=Max("revoked_at")).values("at")),
                Subquery(last_token.annotate(at=Max("revoked_at")).values("at")),
            )
        )
        .filter(last_seen_at__gt=F("last_revoked_at"))
    )


# --- details -----------------------------------------------------------------------------------

CERTIFICATE_FIELDS = (
    "id",
    "device_id",
    "device__organization_id",
    "device__serial",
    "fingerprint",
    "not_before",
    "not_after",
    "revoked_at",
    "revocation_reason",
    "last_seen_at",
    "key_algorithm",
    "key_size",
    "signature_hash",
)


def _day(value: dt.datetime) -> str:
    return f"{value:%Y-%m-%d}"


def _detail_expiring(row: dict[str, Any], now: dt.datetime) -> str:
    if row["not_after"] <= now:
        return f"Expired on {_day(row['not_after'])} and was not renewed."
    days = (row["not_after"] - now).days
    return f"Expires on {_day(row['not_after'])} (in {days} days)."


def _detail_aged(row: dict[str, Any], now: dt.datetime) -> str:
    days = (now - row["not_before"]).days
    return (
        f"Issued on {_day(row['not_before'])}, {days} days ago "
        f"(rotate after {settings.PKI_MAX_AGE_DAYS})."
    )


def _detail_revoked_seen(row: dict[str, Any], now: dt.datetime) -> str:
    reason = f" ({row['revocation_reason']})" if row["revocation_reason"] else ""
    return (
        f"Revoked on {row['revoked_at']:%Y-%m-%d %H:%M}{reason}, "
        f"seen on {row['last_seen_at']:%Y-%m-%d %H:%M}."
    )


def _detail_shared(row: dict[str, Any], now: dt.datetime) -> str:
    return f"Certificate SHA-256 {row['fingerprint'][:16]}… is bound to more than one device."


def _detail_weak(row: dict[str, Any], now: dt.datetime) -> str:
    problems = []
    algorithm, bits = row["key_algorithm"], row["key_size"]
    if (
        algorithm not in STRONG_ALGORITHMS
        or (algorithm == "rsa" and bits < MIN_RSA_BITS)
        or (algorithm == "ec" and bits < MIN_EC_BITS)
    ):
        problems.append(f"{algorithm.upper()} {bits}-bit key")
    if row["signature_hash"] in WEAK_HASHES:
        problems.append(f"{row['signature_hash'].upper()} signature")
    return "Weak: " + ", ".join(problems) + "."


DETAILS: dict[str, Callable[[dict[str, Any], dt.datetime], str]] = {
    "expiring": _detail_expiring,
    "aged": _detail_aged,
    "revoked_seen": _detail_revoked_seen,
    "shared": _detail_shared,
    "weak_key": _detail_weak,
}


# --- selectors ---------------------------------------------------------------------------------


def _scoped(
    actor: Actor, organization_path: str | None
) -> tuple[QuerySet[DeviceCertificate], QuerySet[Device]]:
    certificates = DeviceCertificate.objects.for_actor(actor, "view")
    devices = Device.objects.for_actor(actor, "view")
    if organization_path is not None:
        subtree = organization_ids_under([organization_path])
        certificates = certificates.filter(device__organization__in=subtree)
        devices = devices.filter(organization__in=subtree)
    return certificates, devices


def findings(
    *,
    actor: Actor,
    kinds: Iterable[str] = KINDS,
    organization_path: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> list[Finding]:
    """The findings the actor may see (``credential.view``), at most ``limit`` per kind, in
    ``KINDS`` order, oldest certificate first within a kind."""
    now = timezone.now()
    wanted = [kind for kind in KINDS if kind in set(kinds)]
    certificates, devices = _scoped(actor, organization_path)
    queries = _certificate_queries(certificates, now)
    found: list[Finding] = []
    for kind in wanted:
        rows = queries[kind].order_by("id").values(*CERTIFICATE_FIELDS)[:limit]
        found.extend(
            Finding(
                kind=kind,
                certificate_id=row["id"],
                device_id=row["device_id"],
                detail=DETAILS[kind](row, now),
                organization_id=row["device__organization_id"],
                serial=row["device__serial"],
            )
            for row in rows
        )
        if kind == "revoked_seen":
            found.extend(_silenced_findings(devices, limit))
    return found


def _silenced_findings(devices: QuerySet[Device], limit: int) -> list[Finding]:
    rows = (
        _silenced_devices(devices)
        .order_by("id")
        .values("id", "organization_id", "serial", "last_seen_at", "last_revoked_at")[:limit]
    )
    return [
        Finding(
            kind="revoked_seen",
            certificate_id=None,
            device_id=row["id"],
            detail=(
                f"Every credential was revoked (last on {row['last_revoked_at']:%Y-%m-%d %H:%M}),"
                f" yet the device was seen on {row['last_seen_at']:%Y-%m-%d %H:%M}."
            ),
            organization_id=row["organization_id"],
            serial=row["serial"],
        )
        for row in rows
    ]


def counts_by_organization(*, actor: Actor = SYSTEM) -> dict[uuid.UUID, dict[str, int]]:
    """``{organization id: {kind: findings}}`` for the organizations with at least one finding
    (one GROUP BY per kind)."""
    now = timezone.now()
    certificates, devices = _scoped(actor, None)
    counts: dict[uuid.UUID, dict[str, int]] = {}
    grouped = [
        (kind, query.order_by().values_list("device__organization_id").annotate(n=Count("id")))
        for kind, query in _certificate_queries(certificates, now).items()
    ]
    silenced = Device.objects.filter(pk__in=_silenced_devices(devices).values("pk"))
    grouped.append(
        ("revoked_seen", silenced.order_by().values_list("organization_id").annotate(n=Count("id")))
    )
    for kind, rows in grouped:
        for organization_id, number in rows:
            totals = counts.setdefault(organization_id, dict.fromkeys(KINDS, 0))
            totals[kind] += number
    return counts


@transaction.atomic
def emit_audit_events() -> int:
    """One ``certificates.audit`` event per organization with findings (counts only). Returns
    how many were emitted."""
    counts = counts_by_organization()
    for organization_id, totals in sorted(counts.items()):
        events.emit(
            "certificates.audit",
            organization_id=organization_id,
            payload={"counts": totals, "total": sum(totals.values())},
        )
    return len(counts)
