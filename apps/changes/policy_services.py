"""Writes of approval policies (permission ``changerequest.change`` on their organization)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from apps.accounts.models import Organization
from apps.core import audit
from apps.core.actors import Actor
from apps.profiles.models import DeviceProfile

from .models import ApprovalPolicy

__all__ = ["policy_create", "policy_delete", "policy_update"]

FIELDS = (
    "profile",
    "name",
    "command_threshold",
    "device_threshold",
    "configuration_always",
    "configuration_critical_keys",
    "approvals_required",
)


def _require(actor: Actor, organization: Organization) -> None:
    if not actor.has_perm("changerequest.change", organization.path):
        raise PermissionDenied("You may not manage approval policies here.")


def _check(actor: Actor, policy: ApprovalPolicy) -> None:
    if not policy.name.strip():
        raise ValidationError({"name": ["This field may not be blank."]})
    if policy.profile_id is not None:
        visible = DeviceProfile.objects.for_actor(actor, "view").filter(pk=policy.profile_id)
        within = visible.filter(organization__path__in=_lineage(policy.organization))
        if not within.exists():
            raise ValidationError({"profile": ["Unknown profile."]})
    taken = ApprovalPolicy.objects.filter(
        organization=policy.organization_id, profile=policy.profile_id
    ).exclude(pk=policy.pk)
    if taken.exists():
        raise ValidationError(
            {"profile": ["This organization already has a policy for this profile."]}
        )


def _lineage(organization: Organization) -> list[str]:
    """The paths of the organization and its ancestors (profiles are shared down)."""
    segments = organization.path.rstrip("/").split("/")
    return ["".join(f"{segment}/" for segment in segments[: n + 1]) for n in range(len(segments))]


@transaction.atomic
def policy_create(*, actor: Actor, organization: Organization, **fields: Any) -> ApprovalPolicy:
    """Create the organization's policy (for one profile, or its general one)."""
    _require(actor, organization)
    policy = ApprovalPolicy(organization=organization, **fields)
    _check(actor, policy)
    policy.save()
    audit.record(
        actor=actor,
        action="approvalpolicy.create",
        obj=policy,
        changes=audit.diff({}, audit.snapshot(policy, FIELDS)),
    )
    return policy


@transaction.atomic
def policy_update(*, actor: Actor, policy: ApprovalPolicy, **fields: Any) -> ApprovalPolicy:
    """Change a policy. Requests already submitted keep the approvals they were judged to
    need; an edit of a request judges it again."""
    _require(actor, policy.organization)
    policy = ApprovalPolicy.objects.select_for_update(of=("self",)).get(pk=policy.pk)
    before = audit.snapshot(policy, FIELDS)
    for name, value in fields.items():
        setattr(policy, name, value)
    _check(actor, policy)
    policy.save()
    changes = audit.diff(before, audit.snapshot(policy, FIELDS))
    if changes:
        audit.record(actor=actor, action="approvalpolicy.update", obj=policy, changes=changes)
    return policy


@transaction.atomic
def policy_delete(*, actor: Actor, policy: ApprovalPolicy) -> None:
    """Delete a policy: the next one up applies from now on."""
    _require(actor, policy.organization)
    audit.record(
        actor=actor,
        action="approvalpolicy.delete",
        obj=policy,
        changes=audit.diff(audit.snapshot(policy, FIELDS), {}),
    )
    policy.delete()
