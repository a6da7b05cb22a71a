"""How a device proves, at enrollment, that it may join: a claim token or a factory certificate.

Claim token: ``fo_claim_<prefix>_<secret>``; the prefix finds the row, the SHA-256 of the whole
token is compared in constant time; it must be unrevoked, unexpired, with uses left, and its
policy enabled. A use is taken with one conditional UPDATE (``uses < max_uses``), so concurrent
enrollments can never exceed the limit.

Factory certificate: the chain (leaf first) must lead to a verified registered CA trusted by an
enabled factory-certificate policy (``pki.external.recognise``), the leaf must name the serial
number (CN or subject serialNumber) and the request must be signed by the leaf's key over
``fleetops-enroll:v1:{serial}:{nonce}:{timestamp}:{sha256 hex of the CSR PEM bytes}``, which
binds the proof to this request's nonce, time and key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID
from django.core.exceptions import ValidationError
from django.db.models import F
from django.utils import timezone

from apps.accounts import tokens

from .choices import EnrollmentMethod
from .enrollment_guard import Refused
from .models import CertificateAuthority, ClaimToken, EnrollmentPolicy
from .pki import certs, external

CLAIM_KIND = "claim"
SIGNING_PREFIX = "fleetops-enroll:v1"
POLICY_RELATED = ("organization", "target_organization", "profile")


@dataclass(frozen=True)
class Proof:
    """What the device proved: the policy it enrolls under, and the claim token or the factory
    certificate (with the registered CA that issued it) it proved it with."""

    policy: EnrollmentPolicy
    claim_token: ClaimToken | None = None
    factory_certificate: x509.Certificate | None = None
    authority: CertificateAuthority | None = None

    @property
    def method(self) -> str:
        return self.policy.method

    @property
    def factory_fingerprint(self) -> str:
        return certs.fingerprint(self.factory_certificate) if self.factory_certificate else ""


def unauthorized(code: str, message: str, field: str = "") -> Refused:
    return Refused(401, code, message, field=field)


def rate_key(*, claim_token: str, factory_certificate: str) -> str:
    """What the per-token rate limit counts: the claim token's prefix (so guessing secrets for
    one prefix is limited too), or a digest of the presented certificate chain."""
    if claim_token:
        return "claim:" + (tokens.parse_prefix(claim_token, CLAIM_KIND) or "malformed")
    digest = hashlib.sha256(factory_certificate.encode()).hexdigest()[:32]
    return f"factory:{digest}"


# --- claim tokens ------------------------------------------------------------------------------


def claim_token_proof(token: str) -> Proof:
    """The policy a claim token enrolls under; ``Refused`` (401) for a bad, revoked or expired
    token, or one whose policy is disabled. Uses are checked when one is spent (``consume``):
    a quarantined device keeps polling with a token whose last use registered it."""
    prefix = tokens.parse_prefix(token, CLAIM_KIND)
    row = (
        ClaimToken.objects.select_related(*(f"policy__{name}" for name in POLICY_RELATED))
        .filter(prefix=prefix)
        .first()
        if prefix
        else None
    )
    if row is None or not tokens.matches(token, row.token_hash):
        raise unauthorized("bad_claim_token", "The claim token is not valid.", "claim_token")
    if row.revoked_at is not None:
        raise unauthorized("claim_token_revoked", "The claim token was revoked.", "claim_token")
    if row.expires_at <= timezone.now():
        raise unauthorized("claim_token_expired", "The claim token has expired.", "claim_token")
    policy = row.policy
    if not policy.enabled or policy.method != EnrollmentMethod.CLAIM_TOKEN:
        raise unauthorized(
            "policy_disabled", "The claim token's enrollment policy is disabled.", "claim_token"
        )
    return Proof(policy=policy, claim_token=row)


def has_uses_left(claim_token: ClaimToken) -> None:
    """Refuse (401) ``claim_token`` when it had no use left as ``claim_token_proof`` read it: the
    early answer. Only ``consume`` enforces the limit under concurrency."""
    if claim_token.uses >= claim_token.max_uses:
        raise _used_up()


def consume(claim_token: ClaimToken) -> None:
    """Take one use of ``claim_token`` (in the caller's transaction): a conditional UPDATE, so
    the limit holds under any concurrency; ``Refused`` (401) when none is left. The UPDATE
    locks the token's row until the transaction ends: enrollment takes the use last, just
    before its commit, so that the devices of one batch (one token) do not queue behind each
    other for a whole enrollment."""
    taken = ClaimToken.objects.filter(
        pk=claim_token.pk,
        uses__lt=F("max_uses"),
        revoked_at=None,
        expires_at__gt=timezone.now(),
    ).update(uses=F("uses") + 1, updated_at=timezone.now())
    if taken != 1:
        raise _used_up()


def _used_up() -> Refused:
    return unauthorized("claim_token_used_up", "The claim token has no uses left.", "claim_token")


# --- factory certificates ----------------------------------------------------------------------


def signing_string(*, serial: str, nonce: str, timestamp: str, csr: str) -> bytes:
    """What the factory key signs: the serial, the nonce and the timestamp exactly as sent, and
    the SHA-256 (hex) of the CSR's PEM bytes as sent (of nothing for a token credential)."""
    digest = hashlib.sha256(csr.encode()).hexdigest()
    return f"{SIGNING_PREFIX}:{serial}:{nonce}:{timestamp}:{digest}".encode()


def factory_proof(
    *,
    chain_pem: str,
    signature: str,
    serial: str,
    signed: bytes,
    profile_hint: str = "",
) -> Proof:
    """The policy a factory certificate enrolls under. 400 for a malformed chain or signature,
    401 for a chain no enabled policy trusts, a leaf for another serial or a bad signature."""
    try:
        certs.load_chain(chain_pem)
    except ValueError:
        raise ValidationError({"factory_certificate": "Not a PEM certificate chain."}) from None
    raw_signature = _decode_signature(signature)
    policies = list(
        EnrollmentPolicy.objects.filter(
            enabled=True, method=EnrollmentMethod.FACTORY_CERTIFICATE
        ).prefetch_related("authorities")
    )
    owners = sorted(
        {ca.organization_id for policy in policies for ca in policy.authorities.all()},
        key=str,
    )
    try:
        recognised = external.recognise(chain_pem, organization_ids=owners)  # type: ignore[arg-type]
    except ValidationError as error:
        message = " ".join(error.message_dict.get("factory_certificate", error.messages))
        raise unauthorized("unknown_factory_certificate", message, "factory_certificate") from None
    if serial not in _names(recognised.leaf):
        raise unauthorized(
            "factory_certificate_serial",
            "The factory certificate does not name this serial number (CN or serialNumber).",
            "factory_certificate",
        )
    if not verify_signature(recognised.leaf.public_key(), raw_signature, signed):
        raise unauthorized(
            "bad_signature",
            "The factory signature does not verify with the factory certificate's key.",
            "factory_signature",
        )
    policy = _policy_for(policies, recognised.authority, profile_hint)
    return Proof(policy=policy, factory_certificate=recognised.leaf, authority=recognised.authority)


def _decode_signature(signature: str) -> bytes:
    text = signature.strip()
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=False)
    except (binascii.Error, ValueError):
        raise ValidationError({"factory_signature": "Not base64."}) from None


def _names(leaf: x509.Certificate) -> set[str]:
    found = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    found += leaf.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    return {str(attribute.value) for attribute in found}


def _policy_for(
    policies: list[EnrollmentPolicy], authority: CertificateAuthority, profile_hint: str
) -> EnrollmentPolicy:
    """Among the enabled policies trusting ``authority``: the one for the profile the device
    named, else one for any profile, else the oldest."""
    trusting = [
        policy
        for policy in sorted(policies, key=lambda policy: policy.created_at)
        if any(ca.pk == authority.pk for ca in policy.authorities.all())
    ]
    if not trusting:  # the CA was recognised for the owners, but no policy names it
        raise unauthorized(
            "unknown_factory_certificate",
            "No enrollment policy trusts the factory certificate's CA.",
            "factory_certificate",
        )

    def named(policy: EnrollmentPolicy) -> bool:
        profile = policy.profile
        return profile is not None and profile_hint in (str(profile.pk), profile.slug)

    chosen = next((policy for policy in trusting if profile_hint and named(policy)), None)
    chosen = chosen or next((policy for policy in trusting if policy.profile_id is None), None)
    chosen = chosen or trusting[0]
    return EnrollmentPolicy.objects.select_related(*POLICY_RELATED).get(pk=chosen.pk)


def verify_signature(public_key: Any, signature: bytes, data: bytes) -> bool:
    """ECDSA (DER) and RSA (PKCS#1 v1.5 or PSS) with SHA-256; Ed25519 and Ed448 as is."""
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            return _verify_rsa(public_key, signature, data)
        elif isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            public_key.verify(signature, data)
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _verify_rsa(public_key: rsa.RSAPublicKey, signature: bytes, data: bytes) -> bool:
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    for scheme in (padding.PKCS1v15(), pss):
        try:
            public_key.verify(signature, data, scheme, hashes.SHA256())
        except InvalidSignature:
            continue
        return True
    return False
