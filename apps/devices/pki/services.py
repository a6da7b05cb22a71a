"""Writes on device credentials: revoke a certificate or everything a device holds, renew a
certificate, create and revoke device tokens; and the device-token check of the device API.

Each service runs in one transaction, checks the actor (``credential.add`` / ``credential.delete``
on the device's organization; a device may renew only its own certificate) and writes its audit
record on the *device* (so credential changes appear in the device's timeline). Revocations
move the broker's state counter (``revocation.bump_broker_state``): ``broker_sync`` then
rewrites the CRL and the password file and reloads the broker.

Renewal supersedes, it does not revoke: the previous certificate stays valid until it expires,
so a device that loses the new certificate before storing it (power cut mid-write) can still
connect and renew again. Revoke it explicitly when that window is not wanted.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from apps.accounts import tokens
from apps.core import audit, events
from apps.core.actors import Actor, ActorKind

from .. import lifecycle
from ..choices import CertificateKind, CredentialStatus, DeviceState
from ..models import Device
from ..models_pki import DeviceCertificate, DeviceToken
from ..services import device_payload
from . import issuance, keys, revocation

TOKEN_KIND = "dev"
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)
# Reasons a person may give (RFC 5280 CRLReason names); lifecycle hooks use their own.
REVOCATION_REASONS = (
    "unspecified",
    "key_compromise",
    "affiliation_changed",
    "superseded",
    "cessation_of_operation",
    "privilege_withdrawn",
)
# A quarantined device has no credential to renew yet; a suspended one gets none until resumed.
RENEWABLE = frozenset({DeviceState.ESCROW, DeviceState.ACTIVE, DeviceState.MAINTENANCE})


def device_actor(device: Device) -> Actor:
    """The actor of a device acting for itself (renewing its certificate)."""
    return Actor(
        kind=ActorKind.DEVICE,
        label=f"device {device.serial}"[:255],
        device_id=device.pk,
        source="device",
    )


def _require(actor: Actor, permission: str, device: Device) -> None:
    if actor.kind == ActorKind.DEVICE:
        if actor.device_id != device.pk or permission != "credential.add":
            raise PermissionDenied
        return
    if not actor.has_perm(permission, device.organization.path):
        raise PermissionDenied


def _lock(device: Device) -> Device:
    return (
        Device.objects.select_for_update(of=("self",))
        .select_related("organization")
        .get(pk=device.pk)
    )


def _check_reason(reason: str) -> str:
    if reason not in REVOCATION_REASONS:
        raise ValidationError({"reason": f"Must be one of: {', '.join(REVOCATION_REASONS)}."})
    return reason


def _emit(event_type: str, device: Device, **extra: Any) -> None:
    events.emit(
        event_type,
        organization_id=device.organization_id,
        payload=device_payload(device, **extra),
        subject=device,
    )


# --- certificates ------------------------------------------------------------------------------


@transaction.atomic
def certificate_revoke(
    *, actor: Actor, certificate: DeviceCertificate, reason: str
) -> DeviceCertificate:
    """Revoke one certificate of a device; the broker refuses it after its next CRL reload."""
    _check_reason(reason)
    device = _lock(certificate.device)
    _require(actor, "credential.delete", device)
    certificate = DeviceCertificate.objects.select_for_update().get(pk=certificate.pk)
    if certificate.status == CredentialStatus.REVOKED:
        raise ValidationError({"status": "This certificate is already revoked."})
    previous = certificate.status
    revocation.revoke_certificate(certificate, reason)
    audit.record(
        actor=actor,
        action="device.certificate_revoke",
        obj=device,
        changes={
            "certificate": str(certificate.pk),
            "serial_number": certificate.serial_number,
            "status": [previous, CredentialStatus.REVOKED],
            "reason": reason,
        },
    )
    _emit(
        "device.certificate_revoked",
        device,
        certificate=str(certificate.pk),
        serial_number=certificate.serial_number,
        reason=reason,
    )
    return certificate


@transaction.atomic
def device_credentials_revoke(*, actor: Actor, device: Device, reason: str) -> tuple[int, int]:
    """Revoke every certificate (factory ones included) and every token of ``device``.
    Returns (certificates, tokens) revoked."""
    _check_reason(reason)
    device = _lock(device)
    _require(actor, "credential.delete", device)
    certificates, device_tokens = revocation.revoke_for_devices([device.pk], reason)
    audit.record(
        actor=actor,
        action="device.credentials_revoke",
        obj=device,
        changes={"reason": reason, "certificates": certificates, "tokens": device_tokens},
    )
    _emit(
        "device.credentials_revoked",
        device,
        reason=reason,
        certificates=certificates,
        tokens=device_tokens,
    )
    return certificates, device_tokens


@transaction.atomic
def certificate_renew(
    *, actor: Actor, device: Device, csr: str | x509.CertificateSigningRequest
) -> tuple[DeviceCertificate, str]:
    """A new operational certificate for ``device`` from ``csr`` (CN = the device UUID). The
    device's previous operational certificates become ``superseded``, not revoked (see the
    module's docstring). Returns the row and the chain to hand the device."""
    device = _lock(device)
    _require(actor, "credential.add", device)
    if device.state not in RENEWABLE:
        raise ValidationError(
            {"state": f"Cannot renew the certificate of a {device.state} device."}
        )
    if isinstance(csr, str):
        csr = issuance.load_csr(csr, expected_names=(str(device.pk),))
    previous = DeviceCertificate.objects.filter(
        device=device, kind=CertificateKind.OPERATIONAL, status=CredentialStatus.ACTIVE
    )
    superseded = [str(pk) for pk in previous.values_list("pk", flat=True)]
    previous.update(status=CredentialStatus.SUPERSEDED, updated_at=timezone.now())
    row, chain = issuance.issue(device=device, csr=csr)
    audit.record(
        actor=actor,
        action="device.certificate_renew",
        obj=device,
        changes={
            "certificate": str(row.pk),
            "serial_number": row.serial_number,
            "not_after": row.not_after,
            "superseded": superseded,
        },
    )
    return row, chain


# --- tokens ------------------------------------------------------------------------------------


@transaction.atomic
def device_token_create(
    *, actor: Actor, device: Device, label: str = "", expires_at: dt.datetime | None = None
) -> tuple[DeviceToken, str]:
    """A new token for a device that cannot do TLS client authentication. Returns the row and
    the token, ``fo_dev_<prefix>_<secret>``: shown this once, stored as a prefix, a SHA-256 and
    the broker's password hash (MQTT username = device UUID, password = token)."""
    device = _lock(device)
    _require(actor, "credential.add", device)
    if device.state not in lifecycle.LIVE:
        raise ValidationError({"device": f"A {device.state} device cannot get a token."})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "Must be in the future."})
    issued = tokens.issue(TOKEN_KIND)
    row = DeviceToken.objects.create(
        device=device,
        prefix=issued.prefix,
        token_hash=issued.token_hash,
        broker_hash=keys.broker_password_hash(issued.token),
        label=label.strip()[:100],
        created_by_id=actor.user_id,
        expires_at=expires_at,
    )
    revocation.bump_broker_state()  # the broker's password file gains this token
    audit.record(
        actor=actor,
        action="device.token_create",
        obj=device,
        changes={
            "token": str(row.pk),
            "prefix": row.prefix,
            "label": row.label,
            "expires_at": expires_at,
        },
    )
    return row, issued.token


@transaction.atomic
def device_token_revoke(*, actor: Actor, token: DeviceToken) -> DeviceToken:
    """Revoke a device token: refused by the HTTPS device API at once, by the broker after its
    next password-file reload."""
    device = _lock(token.device)
    _require(actor, "credential.delete", device)
    token = DeviceToken.objects.select_for_update().get(pk=token.pk)
    if token.revoked_at is not None:
        raise ValidationError({"revoked_at": "This token is already revoked."})
    token.revoked_at = timezone.now()
    token.save(update_fields=["revoked_at", "updated_at"])
    revocation.bump_broker_state()
    audit.record(
        actor=actor,
        action="device.token_revoke",
        obj=device,
        changes={
            "token": str(token.pk),
            "prefix": token.prefix,
            "revoked_at": [None, token.revoked_at],
        },
    )
    _emit("device.token_revoked", device, token=str(token.pk), prefix=token.prefix)
    return token


TOKEN_STATUSES = ("active", "expired", "revoked")


def token_status(token: DeviceToken, now: dt.datetime | None = None) -> str:
    """``active``, ``expired`` or ``revoked``."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= (now or timezone.now()):
        return "expired"
    return "active"


def token_usable(token: DeviceToken, now: dt.datetime) -> bool:
    return (
        token.revoked_at is None
        and (token.expires_at is None or token.expires_at > now)
        and token.device.state in lifecycle.LIVE
    )


def authenticate_token(token: str) -> DeviceToken | None:
    """The usable device token for ``token`` (with its device loaded), or None: unknown,
    malformed, wrong secret (constant-time comparison), revoked, expired, or a device that is
    decommissioned or replaced. Updates ``last_used_at`` at most once a minute."""
    if not isinstance(token, str):
        return None
    prefix = tokens.parse_prefix(token, TOKEN_KIND)
    if prefix is None:
        return None
    row = DeviceToken.objects.select_related("device").filter(prefix=prefix).first()
    if row is None or not tokens.matches(token, row.token_hash):
        return None
    now = timezone.now()
    if not token_usable(row, now):
        return None
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        DeviceToken.objects.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
    return row
