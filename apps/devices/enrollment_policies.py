"""Writes of zero-touch provisioning's configuration: enrollment policies and their claim tokens.

A policy belongs to an organization and sends the devices it enrolls into its
``target_organization`` (the organization itself or one below it). Its profile, when it names
one, must be usable there (owned by an organization on the target's path: a manufacturer's
profile is shared down its tree). A factory-certificate policy lists the registered (bring your
own) CAs it trusts: verified, not revoked, and owned by an organization on the policy
organization's path or below it.

Claim tokens are batch secrets printed into a production run: ``fo_claim_<prefix>_<secret>``,
shown once, stored as the prefix and a SHA-256 of the whole token (``apps.accounts.tokens``).
Every write is audited in its transaction; the secret never reaches the audit log.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts import tokens
from apps.accounts.models import Organization, User
from apps.core import audit
from apps.core.actors import Actor
from apps.profiles.models import DeviceProfile

from .choices import AuthorityKind, EnrollmentMethod, EscrowAction, FirstContact
from .models import CertificateAuthority, ClaimToken, EnrollmentPolicy

POLICY_FIELDS = (
    "name",
    "profile",
    "method",
    "first_contact",
    "escrow_action",
    "target_organization",
    "allow_token_credentials",
    "enabled",
)
UPDATABLE = (*POLICY_FIELDS, "authorities")
MAX_CLAIM_USES = 1_000_000
CLAIM_KIND = "claim"


@dataclass(frozen=True)
class IssuedClaimToken:
    """A new claim token and its secret, which is shown this once and never stored."""

    claim_token: ClaimToken
    token: str


# --- rules -------------------------------------------------------------------------------------


def _on_path(organization: Organization, owner_path: str) -> bool:
    """Whether ``owner_path`` is ``organization`` or one of its ancestors."""
    return organization.path.startswith(owner_path)


def _rule_errors(
    organization: Organization,
    values: dict[str, Any],
    authorities: list[CertificateAuthority],
) -> dict[str, str]:
    errors: dict[str, str] = {}
    target: Organization = values["target_organization"]
    profile: DeviceProfile | None = values["profile"]
    if not str(values["name"]).strip():
        errors["name"] = "This field may not be blank."
    if not target.path.startswith(organization.path):
        errors["target_organization"] = "Must be the policy's organization or one below it."
    elif not target.is_active:
        errors["target_organization"] = "This organization is deactivated."
    if profile is not None and not _on_path(target, profile.organization.path):
        errors["profile"] = (
            "Devices of this profile cannot be registered in the target organization."
        )
    for name, choices in (
        ("method", EnrollmentMethod),
        ("first_contact", FirstContact),
        ("escrow_action", EscrowAction),
    ):
        if values[name] not in choices.values:
            errors[name] = f"Must be one of {', '.join(choices.values)}."
    errors |= _authority_errors(organization, values["method"], authorities)
    return errors


def _authority_errors(
    organization: Organization, method: str, authorities: list[CertificateAuthority]
) -> dict[str, str]:
    for authority in authorities:
        owner = authority.organization
        usable = (
            authority.kind == AuthorityKind.EXTERNAL
            and authority.verified_at is not None
            and authority.revoked_at is None
            and owner is not None
            and (_on_path(organization, owner.path) or owner.path.startswith(organization.path))
        )
        if not usable:
            # the same message for unknown and unusable: nothing about other CAs leaks
            return {"authorities": f"Unknown or unverified certificate authority {authority.pk}."}
    if method == EnrollmentMethod.FACTORY_CERTIFICATE and not authorities:
        return {"authorities": "A factory-certificate policy needs at least one registered CA."}
    return {}


def _save(policy: EnrollmentPolicy) -> None:
    try:
        with transaction.atomic():
            policy.save()
    except IntegrityError:
        raise ValidationError(
            {"name": "This organization already has an enrollment policy with this name."}
        ) from None


def _snapshot(policy: EnrollmentPolicy) -> dict[str, Any]:
    values = audit.snapshot(policy, POLICY_FIELDS)
    values["authorities"] = sorted(
        str(pk) for pk in policy.authorities.values_list("pk", flat=True)
    )
    return values


# --- policies ----------------------------------------------------------------------------------


@transaction.atomic
def policy_create(
    *,
    actor: Actor,
    organization: Organization,
    name: str,
    method: str,
    target_organization: Organization | None = None,
    profile: DeviceProfile | None = None,
    first_contact: str = FirstContact.ACTIVATE,
    escrow_action: str = EscrowAction.ACTIVATE,
    authorities: Iterable[CertificateAuthority] = (),
    allow_token_credentials: bool = False,
    enabled: bool = True,
) -> EnrollmentPolicy:
    """Create an enrollment policy of ``organization`` (devices land in
    ``target_organization``, the organization itself when not given)."""
    values: dict[str, Any] = {
        "name": name.strip(),
        "method": method,
        "target_organization": target_organization or organization,
        "profile": profile,
        "first_contact": first_contact,
        "escrow_action": escrow_action,
        "allow_token_credentials": allow_token_credentials,
        "enabled": enabled,
    }
    trusted = list(authorities)
    errors = _rule_errors(organization, values, trusted)
    if errors:
        raise ValidationError(errors)
    policy = EnrollmentPolicy(organization=organization, **values)
    _save(policy)
    policy.authorities.set(trusted)
    audit.record(
        actor=actor,
        action="enrollmentpolicy.create",
        obj=policy,
        changes=audit.diff({}, _snapshot(policy)),
    )
    return policy


@transaction.atomic
def policy_update(*, actor: Actor, policy: EnrollmentPolicy, **fields: Any) -> EnrollmentPolicy:
    """Change any of ``UPDATABLE`` (``enabled=False`` disables the policy: its claim tokens and
    trusted CAs enroll nothing until it is enabled again)."""
    unknown = sorted(set(fields) - set(UPDATABLE))
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed here."))
    policy = (
        EnrollmentPolicy.objects.select_for_update(of=("self",))
        .select_related("organization", "target_organization", "profile__organization")
        .get(pk=policy.pk)
    )
    before = _snapshot(policy)
    trusted = list(fields.pop("authorities", policy.authorities.all()))
    values = {name: fields.get(name, getattr(policy, name)) for name in POLICY_FIELDS}
    values["name"] = str(values["name"]).strip()
    errors = _rule_errors(policy.organization, values, trusted)
    if errors:
        raise ValidationError(errors)
    for name, value in values.items():
        setattr(policy, name, value)
    _save(policy)
    policy.authorities.set(trusted)
    changes = audit.diff(before, _snapshot(policy))
    if changes:
        audit.record(actor=actor, action="enrollmentpolicy.update", obj=policy, changes=changes)
    return policy


# --- claim tokens ------------------------------------------------------------------------------


@transaction.atomic
def claim_token_create(
    *,
    actor: Actor,
    policy: EnrollmentPolicy,
    expires_at: datetime,
    max_uses: int,
    label: str = "",
    created_by: User | None = None,
) -> IssuedClaimToken:
    """Issue a claim token for a claim-token policy. The secret is in the result only."""
    errors: dict[str, str] = {}
    if policy.method != EnrollmentMethod.CLAIM_TOKEN:
        errors["policy"] = "This policy enrolls devices by factory certificate, not claim token."
    if expires_at <= timezone.now():
        errors["expires_at"] = "Must be in the future."
    if not 1 <= max_uses <= MAX_CLAIM_USES:
        errors["max_uses"] = f"Must be between 1 and {MAX_CLAIM_USES}."
    if len(label) > 100:
        errors["label"] = "At most 100 characters."
    if errors:
        raise ValidationError(errors)
    issued = tokens.issue(CLAIM_KIND)
    claim_token = ClaimToken.objects.create(
        policy=policy,
        prefix=issued.prefix,
        token_hash=issued.token_hash,
        label=label.strip(),
        expires_at=expires_at,
        max_uses=max_uses,
        created_by=created_by,
    )
    audit.record(
        actor=actor,
        action="claimtoken.create",
        obj=claim_token,
        organization_id=policy.organization_id,
        changes={
            "policy": [None, str(policy.pk)],
            "prefix": [None, claim_token.prefix],
            "label": [None, claim_token.label],
            "expires_at": [None, expires_at],
            "max_uses": [None, max_uses],
        },
    )
    return IssuedClaimToken(claim_token=claim_token, token=issued.token)


@transaction.atomic
def claim_token_revoke(*, actor: Actor, claim_token: ClaimToken) -> ClaimToken:
    """Revoke a claim token (idempotent: a second call changes and records nothing)."""
    claim_token = (
        ClaimToken.objects.select_for_update(of=("self",))
        .select_related("policy")
        .get(pk=claim_token.pk)
    )
    if claim_token.revoked_at is not None:
        return claim_token
    claim_token.revoked_at = timezone.now()
    claim_token.save(update_fields=["revoked_at", "updated_at"])
    audit.record(
        actor=actor,
        action="claimtoken.revoke",
        obj=claim_token,
        organization_id=claim_token.policy.organization_id,
        changes={"revoked_at": [None, claim_token.revoked_at], "uses": claim_token.uses},
    )
    return claim_token
