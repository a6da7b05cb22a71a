"""Writes for organizations, memberships, invitations and API keys.

Each service runs in one transaction, writes its audit record and its domain event there, and
leaves side effects (email) to ``transaction.on_commit``. Front doors check that the actor may
act on the organization (``access.py``); services enforce the business rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat, Substr
from django.utils import timezone
from django.utils.text import slugify

from apps.core import audit, events
from apps.core.actors import Actor

from . import tokens
from .models import APIKey, Invitation, Membership, Organization, User
from .roles import ROLE_PERMISSIONS, Role, can_grant

INVITATION_TTL = timedelta(days=7)
ORGANIZATION_FIELDS = ("name", "slug", "kind", "parent", "path", "require_mfa", "is_active")


def _unique_slug(name: str) -> str:
    base = slugify(name)[:60] or "organization"
    slug, counter = base, 2
    while Organization.objects.filter(slug=slug).exists():
        slug, counter = f"{base}-{counter}", counter + 1
    return slug


# --- organizations -----------------------------------------------------------------------------


@transaction.atomic
def organization_create(
    *,
    actor: Actor,
    name: str,
    parent: Organization | None,
    kind: str = Organization.Kind.CUSTOMER,
    slug: str = "",
    require_mfa: bool = False,
) -> Organization:
    """Create an organization under ``parent`` (a root one when ``parent`` is None)."""
    if not name.strip():
        raise ValidationError({"name": "This field may not be blank."})
    slug = slug or _unique_slug(name)
    if Organization.objects.filter(slug=slug).exists():
        raise ValidationError({"slug": "An organization with this slug already exists."})
    organization = Organization(
        name=name.strip(), slug=slug, kind=kind, parent=parent, require_mfa=require_mfa
    )
    organization.path = (parent.path if parent else "") + Organization.segment(organization.id)
    organization.depth = parent.depth + 1 if parent else 0
    organization.full_clean()
    organization.save()
    audit.record(
        actor=actor,
        action="organization.create",
        obj=organization,
        organization_id=organization.pk,
        changes=audit.diff({}, audit.snapshot(organization, ORGANIZATION_FIELDS)),
    )
    events.emit(
        "organization.created",
        organization_id=organization.pk,
        payload={
            "id": str(organization.pk),
            "name": organization.name,
            "parent": str(parent.pk) if parent else None,
        },
        subject=organization,
    )
    return organization


@transaction.atomic
def organization_update(*, actor: Actor, organization: Organization, **fields: Any) -> Organization:
    """Change name, slug, kind, require_mfa or is_active."""
    allowed = {"name", "slug", "kind", "require_mfa", "is_active"}
    unknown = set(fields) - allowed
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "This field cannot be changed here."))
    organization = Organization.objects.select_for_update(of=("self",)).get(pk=organization.pk)
    before = audit.snapshot(organization, ORGANIZATION_FIELDS)
    for name, value in fields.items():
        setattr(organization, name, value)
    organization.full_clean()
    organization.save()
    changes = audit.diff(before, audit.snapshot(organization, ORGANIZATION_FIELDS))
    if changes:
        audit.record(
            actor=actor,
            action="organization.update",
            obj=organization,
            organization_id=organization.pk,
            changes=changes,
        )
        events.emit(
            "organization.updated",
            organization_id=organization.pk,
            payload={"id": str(organization.pk), "changes": changes},
            subject=organization,
        )
    return organization


@transaction.atomic
def organization_move(
    *, actor: Actor, organization: Organization, new_parent: Organization
) -> Organization:
    """Move a subtree under ``new_parent``: one UPDATE rewrites every descendant's path."""
    organization = Organization.objects.select_for_update(of=("self",)).get(pk=organization.pk)
    if new_parent.path.startswith(organization.path):
        raise ValidationError({"parent": "An organization cannot move below itself."})
    old_path, old_parent_id = organization.path, organization.parent_id
    new_path = new_parent.path + Organization.segment(organization.id)
    depth_shift = new_parent.depth + 1 - organization.depth
    Organization.objects.filter(path__startswith=old_path).update(
        path=Concat(Value(new_path), Substr("path", len(old_path) + 1)),
        depth=F("depth") + depth_shift,
    )
    Organization.objects.filter(pk=organization.pk).update(parent=new_parent)
    organization.refresh_from_db()
    changes = {
        "parent": [str(old_parent_id) if old_parent_id else None, str(new_parent.pk)],
        "path": [old_path, new_path],
    }
    audit.record(
        actor=actor,
        action="organization.move",
        obj=organization,
        organization_id=organization.pk,
        changes=changes,
    )
    events.emit(
        "organization.moved",
        organization_id=organization.pk,
        payload={"id": str(organization.pk), "parent": str(new_parent.pk)},
        subject=organization,
    )
    return organization


# --- memberships -------------------------------------------------------------------------------


def _require_grantable(actor: Actor, organization: Organization, role: str) -> None:
    if role not in ROLE_PERMISSIONS:
        raise ValidationError({"role": f"Unknown role {role!r}."})
    if not actor.is_platform_staff and not can_grant(actor.permissions_on(organization.path), role):
        raise ValidationError({"role": "You cannot grant a role with more rights than your own."})


def _owners_left(organization: Organization, excluding: Membership) -> int:
    return (
        Membership.objects.filter(organization=organization, role=Role.OWNER)
        .exclude(pk=excluding.pk)
        .count()
    )


@transaction.atomic
def membership_create(
    *, actor: Actor, organization: Organization, user: User, role: str
) -> Membership:
    _require_grantable(actor, organization, role)
    if Membership.objects.filter(organization=organization, user=user).exists():
        raise ValidationError({"user": "This user is already a member of the organization."})
    membership = Membership.objects.create(organization=organization, user=user, role=role)
    audit.record(
        actor=actor,
        action="membership.create",
        obj=membership,
        changes={"user": [None, user.email], "role": [None, role]},
    )
    events.emit(
        "membership.created",
        organization_id=organization.pk,
        payload={"user": str(user.pk), "role": role},
        subject=membership,
    )
    return membership


@transaction.atomic
def membership_change_role(*, actor: Actor, membership: Membership, role: str) -> Membership:
    membership = Membership.objects.select_for_update(of=("self",)).get(pk=membership.pk)
    _require_grantable(actor, membership.organization, role)
    _require_grantable(actor, membership.organization, membership.role)
    demoting_owner = membership.role == Role.OWNER and role != Role.OWNER
    if demoting_owner and _owners_left(membership.organization, membership) == 0:
        raise ValidationError({"role": "An organization must keep at least one owner."})
    old = membership.role
    if old == role:
        return membership
    membership.role = role
    membership.save(update_fields=["role", "updated_at"])
    audit.record(
        actor=actor, action="membership.update", obj=membership, changes={"role": [old, role]}
    )
    events.emit(
        "membership.updated",
        organization_id=membership.organization_id,
        payload={"user": str(membership.user_id), "role": role},
        subject=membership,
    )
    return membership


@transaction.atomic
def membership_delete(*, actor: Actor, membership: Membership) -> None:
    membership = Membership.objects.select_for_update(of=("self",)).get(pk=membership.pk)
    _require_grantable(actor, membership.organization, membership.role)
    if membership.role == Role.OWNER and _owners_left(membership.organization, membership) == 0:
        raise ValidationError({"role": "An organization must keep at least one owner."})
    audit.record(
        actor=actor,
        action="membership.delete",
        obj=membership,
        changes={"user": [membership.user.email, None], "role": [membership.role, None]},
    )
    events.emit(
        "membership.deleted",
        organization_id=membership.organization_id,
        payload={"user": str(membership.user_id), "role": membership.role},
        subject=membership,
    )
    membership.delete()


# --- invitations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str


@transaction.atomic
def invitation_create(
    *, actor: Actor, organization: Organization, email: str, role: str, invited_by: User | None
) -> IssuedInvitation:
    """Invite ``email`` with ``role``; the link (with the one-time token) is emailed on commit."""
    _require_grantable(actor, organization, role)
    email = email.strip().lower()
    if Membership.objects.filter(organization=organization, user__email=email).exists():
        raise ValidationError({"email": "This person is already a member."})
    issued = tokens.issue("inv")
    invitation = Invitation.objects.create(
        organization=organization,
        email=email,
        role=role,
        token_hash=issued.token_hash,
        invited_by=invited_by,
        expires_at=timezone.now() + INVITATION_TTL,
    )
    audit.record(
        actor=actor,
        action="invitation.create",
        obj=invitation,
        changes={"email": [None, email], "role": [None, role]},
    )
    events.emit(
        "invitation.created",
        organization_id=organization.pk,
        payload={"email": email, "role": role},
        subject=invitation,
    )
    from .emails import send_invitation

    transaction.on_commit(lambda: send_invitation(invitation_id=invitation.pk, token=issued.token))
    return IssuedInvitation(invitation=invitation, token=issued.token)


@transaction.atomic
def invitation_revoke(*, actor: Actor, invitation: Invitation) -> Invitation:
    invitation = Invitation.objects.select_for_update(of=("self",)).get(pk=invitation.pk)
    if invitation.status != "pending":
        raise ValidationError(
            {
                "status": f"Only a pending invitation can be revoked "
                f"(this one is {invitation.status})."
            }
        )
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at", "updated_at"])
    audit.record(
        actor=actor,
        action="invitation.revoke",
        obj=invitation,
        changes={"revoked_at": [None, invitation.revoked_at]},
    )
    return invitation


def invitation_by_token(token: str) -> Invitation | None:
    if tokens.parse_prefix(token, "inv") is None:
        return None
    return (
        Invitation.objects.select_related("organization")
        .filter(token_hash=tokens.hash_token(token))
        .first()
    )


@transaction.atomic
def invitation_accept(*, actor: Actor, user: User, token: str) -> Membership:
    """Accept with the emailed token: the signed-in user becomes a member with the role."""
    invitation = invitation_by_token(token)
    if invitation is None:
        raise ValidationError({"token": "This invitation link is not valid."})
    invitation = Invitation.objects.select_for_update(of=("self",)).get(pk=invitation.pk)
    if invitation.status != "pending":
        raise ValidationError({"token": f"This invitation is {invitation.status}."})
    if invitation.email != user.email.lower():
        raise ValidationError({"token": "This invitation was sent to another email address."})
    membership, created = Membership.objects.get_or_create(
        organization=invitation.organization, user=user, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by", "updated_at"])
    audit.record(
        actor=actor,
        action="invitation.accept",
        obj=invitation,
        changes={"accepted_at": [None, invitation.accepted_at]},
    )
    if created:
        audit.record(
            actor=actor,
            action="membership.create",
            obj=membership,
            changes={"user": [None, user.email], "role": [None, membership.role]},
        )
        events.emit(
            "membership.created",
            organization_id=membership.organization_id,
            payload={"user": str(user.pk), "role": membership.role},
            subject=membership,
        )
    return membership


# --- API keys ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedAPIKey:
    api_key: APIKey
    token: str  # shown once


@transaction.atomic
def api_key_create(
    *,
    actor: Actor,
    organization: Organization,
    name: str,
    role: str,
    permissions: list[str] | None = None,
    expires_at: datetime | None = None,
    created_by: User | None = None,
) -> IssuedAPIKey:
    """Issue a key for ``organization``; narrowed to ``permissions`` when given."""
    _require_grantable(actor, organization, role)
    permissions = sorted(set(permissions or []))
    outside = set(permissions) - ROLE_PERMISSIONS[role]
    if outside:
        raise ValidationError(
            {"permissions": f"Not part of the {role} role: {', '.join(sorted(outside))}."}
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "Must be in the future."})
    if not name.strip():
        raise ValidationError({"name": "This field may not be blank."})
    issued = tokens.issue("api")
    api_key = APIKey.objects.create(
        organization=organization,
        name=name.strip(),
        role=role,
        permissions=permissions,
        prefix=issued.prefix,
        token_hash=issued.token_hash,
        created_by=created_by,
        expires_at=expires_at,
    )
    audit.record(
        actor=actor,
        action="apikey.create",
        obj=api_key,
        changes={
            "name": [None, api_key.name],
            "role": [None, role],
            "permissions": [None, permissions],
        },
    )
    events.emit(
        "apikey.created",
        organization_id=organization.pk,
        payload={"id": str(api_key.pk), "role": role},
        subject=api_key,
    )
    return IssuedAPIKey(api_key=api_key, token=issued.token)


@transaction.atomic
def api_key_revoke(*, actor: Actor, api_key: APIKey) -> APIKey:
    api_key = APIKey.objects.select_for_update(of=("self",)).get(pk=api_key.pk)
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at", "updated_at"])
        audit.record(
            actor=actor,
            action="apikey.revoke",
            obj=api_key,
            changes={"revoked_at": [None, api_key.revoked_at]},
        )
        events.emit(
            "apikey.revoked",
            organization_id=api_key.organization_id,
            payload={"id": str(api_key.pk)},
            subject=api_key,
        )
    return api_key


LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_key_authenticate(token: str) -> APIKey | None:
    """The usable key for ``token``, or None. Updates last-used at most once a minute."""
    prefix = tokens.parse_prefix(token, "api")
    if prefix is None:
        return None
    api_key = APIKey.objects.select_related("organization").filter(prefix=prefix).first()
    if api_key is None or not tokens.matches(token, api_key.token_hash):
        return None
    if not api_key.is_usable:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        APIKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def user_mfa_required(user: User) -> bool:
    """Whether any organization the user belongs to requires two-factor authentication."""
    return Membership.objects.filter(
        user=user, organization__require_mfa=True, organization__is_active=True
    ).exists()
