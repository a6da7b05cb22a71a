"""The writes and reads behind an enrollment (``enrollment.Enrollment``): credentials, the
factory certificate, inventory, the audit records, the domain events and the live push.

Kept apart from the flow so each stays readable; nothing here decides whether a device may
enroll, except the factory-certificate identity check (``check_factory_certificate``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.db.models import Case, Q, When
from django.utils import timezone

from apps.accounts import tokens
from apps.core import audit, events
from apps.core.actors import Actor, ActorKind

from . import enrollment_guard as guard
from . import provisioning
from .choices import CertificateKind, CredentialStatus
from .enrollment_guard import Refused
from .models import Device, DeviceCertificate, DeviceToken
from .pki import authorities, certs, issuance, revocation
from .pki import services as credential_services
from .services import broadcast, device_payload

if TYPE_CHECKING:
    from .enrollment import Enrollment

CERTIFICATE, TOKEN = "certificate", "token"
POLL_SECONDS = 60  # how long a quarantined device waits before asking again
DEVICE_TYPE = "devices.device"
LIVE_PUSH = frozenset({"registered", "enrolled", "reenrolled", "quarantined"})
SUPERSEDED = "superseded"


@dataclass(frozen=True)
class EnrollmentRequest:
    """A validated enrollment request (``device_views`` parses the JSON)."""

    serial: str
    nonce: str
    timestamp: datetime
    timestamp_raw: str  # as sent: it is part of what a factory key signs
    source: str
    csr: str = ""
    claim_token: str = ""
    factory_certificate: str = ""
    factory_signature: str = ""
    credential: str = CERTIFICATE
    profile: str = ""
    hardware_revision: str = ""
    inventory: dict[str, Any] | None = None


@dataclass
class EnrollmentResult:
    """What the device gets: 201 (registered), 200 (known device) or 202 (quarantined)."""

    device: Device
    status: int
    outcome: str
    certificate: DeviceCertificate | None = None
    chain_pem: str = ""
    token: str = ""
    provisioning: dict[str, Any] = field(default_factory=dict)
    retry_after: int | None = None
    root_pem: str = ""  # the current root, when read along with the issuing CA


# --- credentials -------------------------------------------------------------------------------


def live_operational(device: Device) -> Any:
    """The device's operational certificates the broker still accepts (not revoked, unexpired;
    a superseded one stays valid until it expires)."""
    return DeviceCertificate.objects.filter(
        device=device, kind=CertificateKind.OPERATIONAL, not_after__gt=timezone.now()
    ).exclude(status=CredentialStatus.REVOKED)


def _live_tokens(device: Device) -> Any:
    now = timezone.now()
    return DeviceToken.objects.filter(device=device, revoked_at=None).filter(
        Q(expires_at=None) | Q(expires_at__gt=now)
    )


def live_credentials(device: Device, csr: Any) -> tuple[DeviceCertificate | None, bool]:
    """(the device's active certificate for the CSR's very key, if any; whether the device can
    still connect: an operational certificate or a token alive). Its factory certificate proves
    who it is; it is not a credential to connect with. One query when a certificate is live,
    two otherwise."""
    active_first = Case(When(status=CredentialStatus.ACTIVE, then=0), default=1)
    rows = list(live_operational(device).order_by(active_first, "-id")[:5])
    wanted = _public_der(csr.public_key()) if csr is not None else None
    for row in rows if wanted is not None else ():
        active = row.status == CredentialStatus.ACTIVE
        if active and _public_der(certs.load_pem(row.certificate_pem).public_key()) == wanted:
            return row, True
    return None, bool(rows) or _live_tokens(device).exists()


def ever_had_credentials(device: Device) -> bool:
    return (
        DeviceCertificate.objects.filter(device=device, kind=CertificateKind.OPERATIONAL).exists()
        or DeviceToken.objects.filter(device=device).exists()
    )


def _public_der(public_key: Any) -> bytes:
    return public_key.public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def supersede_credentials(device: Device) -> None:
    """A re-enrolled (wiped) device: its old operational certificates and tokens are revoked,
    reason ``superseded`` (set-based); its factory certificate stays (it is its identity)."""
    revocation.revoke_for_devices([device.pk], SUPERSEDED, kinds=[CertificateKind.OPERATIONAL])


def credentials(flow: Enrollment, device: Device) -> tuple[issuance.Issued | None, str]:
    """Issue what the device asked for: (the certificate issued, "") or (None, token)."""
    if flow.request.credential == TOKEN:
        _, token = credential_services.device_token_create(
            actor=credential_services.device_actor(device), device=device, label="enrollment"
        )
        return None, token
    return issuance.issue_with_root(device=device, csr=flow.csr), ""


def chain_for(certificate: DeviceCertificate) -> str:
    """The certificate, then its issuer's chain up to the root."""
    return certificate.certificate_pem + authorities.chain_pem(certificate.issuer)


# --- the factory certificate -------------------------------------------------------------------


def check_factory_certificate(flow: Enrollment, device: Device | None) -> bool:
    """Whether the presented factory certificate is the one ``device`` enrolled with. Refuses
    (403) a certificate bound to another device, or one other than the device's own."""
    proof = flow.proof
    if proof is None or proof.factory_certificate is None:
        return False
    fingerprint = proof.factory_fingerprint
    factory = DeviceCertificate.objects.filter(kind=CertificateKind.FACTORY)
    elsewhere = factory.filter(fingerprint=fingerprint)
    if device is not None:
        elsewhere = elsewhere.exclude(device=device)
    if elsewhere.exists():
        raise Refused(
            403,
            "factory_certificate_elsewhere",
            "This factory certificate belongs to another device.",
            field="factory_certificate",
        )
    if device is None:
        return False
    recorded = factory.filter(device=device).exclude(status=CredentialStatus.REVOKED)
    if recorded.filter(fingerprint=fingerprint).exists():
        return True
    if recorded.exists():
        raise Refused(
            403,
            "factory_certificate_mismatch",
            "The device enrolled with another factory certificate.",
            field="factory_certificate",
        )
    return False


def factory_certificate(flow: Enrollment, device: Device) -> None:
    """Record the factory certificate on the device at its first enrollment with it: its
    fingerprint is how a wiped device is recognised later."""
    proof = flow.proof
    if proof is None or proof.factory_certificate is None:
        return
    known = DeviceCertificate.objects.filter(
        device=device, kind=CertificateKind.FACTORY, fingerprint=proof.factory_fingerprint
    )
    if not known.exists():
        issuance.record(
            device=device,
            certificate=proof.factory_certificate,
            issuer=proof.authority,
            kind=CertificateKind.FACTORY,
        )


# --- device facts ------------------------------------------------------------------------------


def inventory(flow: Enrollment, device: Device, **also: Any) -> None:
    """What the device reported (inventory, hardware revision) and that it was just seen, with
    the other fields in ``also`` (its provisioning at registration): one UPDATE, mirrored on
    ``device`` so that nothing has to read it back."""
    request = flow.request
    now = timezone.now()
    values: dict[str, Any] = {"last_seen_at": now, "updated_at": now, **also}
    reported = dict(request.inventory or {})
    if request.hardware_revision:
        reported["hardware_revision"] = request.hardware_revision
    if reported:
        values["inventory"] = {**device.inventory, **reported}
        firmware = reported.get("firmware_version")
        if isinstance(firmware, str) and firmware:
            values["firmware_version"] = firmware[:64]
    Device.objects.filter(pk=device.pk).update(**values)
    for name, value in values.items():
        setattr(device, name, value)


def provisioning_of(device: Device) -> dict[str, Any]:
    """What provisioning gave the device, or (not applied yet: escrow) what it would give."""
    if device.provisioning:
        return dict(device.provisioning)
    version = device.profile_version
    return provisioning.resolve(device.organization, version)


# --- outcomes ----------------------------------------------------------------------------------


def quarantined(flow: Enrollment, device: Device) -> EnrollmentResult:
    result = EnrollmentResult(
        device=device, status=202, outcome="quarantined", retry_after=POLL_SECONDS
    )
    proof = flow.proof
    claim = proof.claim_token.prefix if proof and proof.claim_token else None
    events.emit(
        "device.discovered",
        organization_id=device.organization_id,
        payload=device_payload(device, policy=str(flow.policy.pk), claim_token=claim),
        subject=device,
    )
    success(flow, result)
    return result


def pending(flow: Enrollment, device: Device) -> EnrollmentResult:
    result = EnrollmentResult(
        device=device, status=202, outcome="pending", retry_after=POLL_SECONDS
    )
    success(flow, result)
    return result


def _summary(flow: Enrollment, extra: dict[str, Any]) -> dict[str, Any]:
    request, proof = flow.request, flow.proof
    policy = proof.policy if proof else None
    summary: dict[str, Any] = {
        "serial": request.serial,
        "source_address": request.source,
        "method": policy.method
        if policy
        else ("claim_token" if request.claim_token else "factory_certificate"),
        "policy": str(policy.pk) if policy else None,
        "credential": request.credential,
    }
    if request.claim_token:
        summary["claim_token"] = tokens.parse_prefix(request.claim_token, "claim")
    if proof is not None and proof.factory_certificate is not None:
        summary["factory_certificate"] = proof.factory_fingerprint
    return summary | extra


def success(flow: Enrollment, result: EnrollmentResult) -> None:
    """Audit the attempt on the device; emit ``device.enrolled`` when it got credentials; push
    the device to open fleet pages after commit. ``result.device`` holds its current state (the
    flow reads or sets it in this transaction)."""
    device = result.device
    extra: dict[str, Any] = {"outcome": result.outcome, "state": device.state}
    if result.certificate is not None:
        extra["certificate"] = result.certificate.serial_number
    changes = _summary(flow, extra)
    audit.record(actor=flow.actor(), action="device.enroll", obj=device, changes=changes)
    if result.outcome in ("registered", "enrolled", "reenrolled"):
        events.emit(
            "device.enrolled",
            organization_id=device.organization_id,
            payload=device_payload(
                device,
                **{
                    key: changes[key]
                    for key in ("state", "outcome", "method", "policy", "credential")
                },
            ),
            subject=device,
        )
    if result.outcome in LIVE_PUSH:
        message = {
            "type": "device.enrolled",
            "id": str(device.pk),
            "serial": device.serial,
            "state": device.state,
        }
        organization_id = device.organization_id
        transaction.on_commit(lambda: broadcast(organization_id, message))


def refusal(flow: Enrollment, error: Refused | ValidationError) -> None:
    """Audit a refused attempt in its own transaction (the attempt itself was rolled back) and
    count it by reason. Past a rate limit, only the first refusal of the window is audited."""
    refused = error if isinstance(error, Refused) else from_validation(error)
    guard.count(refused.reason)
    if refused.status == 429 and not refused.extra.get("first"):
        return
    device = flow.device
    if device is not None and not Device.objects.filter(pk=device.pk).exists():
        device = None  # registered by the attempt that was rolled back
    policy = flow.proof.policy if flow.proof else None
    changes = _summary(
        flow,
        {
            "outcome": "refused",
            "reason": refused.reason,
            "status": refused.status,
            "message": refused.message,
            "field": refused.field,
        },
    )
    actor = Actor(
        kind=ActorKind.DEVICE,
        label=f"device {flow.request.serial} (enrollment)"[:255],
        device_id=device.pk if device else None,
        source="device",
    )
    organization_id = (
        device.organization_id if device else (policy.organization_id if policy else None)
    )
    with transaction.atomic():
        audit.record(
            actor=actor,
            action="device.enroll_refused",
            organization_id=organization_id,
            object_type=DEVICE_TYPE if device else "",
            object_id=str(device.pk) if device else "",
            object_repr=flow.request.serial or "(no serial)",
            changes=changes,
        )


def from_validation(error: ValidationError) -> Refused:
    """A field error as a refusal (400): the first field names the reason."""
    fields = (
        error.message_dict if hasattr(error, "error_dict") else {NON_FIELD_ERRORS: error.messages}
    )
    name, messages = next(iter(fields.items()))
    name = "" if name in (NON_FIELD_ERRORS, "non_field_errors") else name
    return Refused(
        400, "invalid", " ".join(messages), field=name, reason=f"invalid_{name or 'request'}"
    )
