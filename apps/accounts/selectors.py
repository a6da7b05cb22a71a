"""Reads for organizations, memberships, invitations and API keys (always actor-scoped)."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.core.actors import Actor

from .models import APIKey, Invitation, Membership, Organization


def organization_list(*, actor: Actor, action: str = "view") -> QuerySet[Organization]:
    """Organizations in the subtrees where the actor may ``action`` them."""
    return Organization.objects.for_actor(actor, action)


def membership_list(*, actor: Actor, action: str = "view") -> QuerySet[Membership]:
    """Memberships the actor may ``action``, with their users (one query)."""
    return Membership.objects.for_actor(actor, action).select_related("user")


def invitation_list(*, actor: Actor, action: str = "view") -> QuerySet[Invitation]:
    """Invitations the actor may ``action``, with who sent them."""
    return Invitation.objects.for_actor(actor, action).select_related("invited_by")


def api_key_list(*, actor: Actor, action: str = "view") -> QuerySet[APIKey]:
    """API keys the actor may ``action``, with who created them."""
    return APIKey.objects.for_actor(actor, action).select_related("created_by")
