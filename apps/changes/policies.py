"""Which change requests need approval, and how many approvers.

The applicable policy for a request about a profile is, most specific first: the request's
organization's policy for that profile, the organization's own policy, then the same two of
its parent, grandparent... (nearest first), else ``DEFAULT``. A request about several profiles
(a filter across them) is judged by each one's policy and the strictest answer holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from apps.accounts.models import Organization
from apps.core.scoping import ancestor_ids

from .choices import CommandThreshold
from .kinds import Facts
from .models import ApprovalPolicy, ChangeRequest

__all__ = ["DEFAULT", "Policy", "applicable_policy", "required_approvals"]

CONFIGURATION_KIND = "configuration"


@dataclass(frozen=True)
class Policy:
    """The rules of one policy row, or of the installation's default."""

    name: str
    command_threshold: str = CommandThreshold.CRITICAL
    device_threshold: int | None = None
    configuration_always: bool = False
    configuration_critical_keys: tuple[str, ...] = ()
    approvals_required: int = 1
    policy_id: uuid.UUID | None = None

    @classmethod
    def of(cls, row: ApprovalPolicy) -> Policy:
        return cls(
            name=row.name,
            command_threshold=row.command_threshold,
            device_threshold=row.device_threshold,
            configuration_always=row.configuration_always,
            configuration_critical_keys=tuple(row.configuration_critical_keys or ()),
            approvals_required=row.approvals_required,
            policy_id=row.pk,
        )


# Critical commands need one approval, configuration of keys the schema marks critical needs
# one, nothing else does.
DEFAULT = Policy(name="Default")


def applicable_policy(*, organization: Organization, profile_id: uuid.UUID | None) -> Policy:
    """The most specific policy for a request of ``organization`` about ``profile_id``."""
    levels = [organization.pk, *reversed(ancestor_ids([organization.path]))]  # nearest first
    rows = ApprovalPolicy.objects.filter(organization__in=levels, profile__isnull=True)
    if profile_id is not None:
        rows = (
            ApprovalPolicy.objects.filter(organization__in=levels, profile__in=[profile_id]) | rows
        )
    found = {(row.organization_id, row.profile_id): row for row in rows}
    for level in levels:
        for profile in (profile_id, None) if profile_id is not None else (None,):
            row = found.get((level, profile))
            if row is not None:
                return Policy.of(row)
    return DEFAULT


def _touches(keys: Iterable[str], critical: Iterable[str]) -> list[str]:
    """Touched keys equal to, under or above a critical key (``network`` covers
    ``network.apn`` and replacing ``network`` replaces ``network.apn``)."""
    marked = list(critical)
    return sorted(
        key
        for key in keys
        if any(
            key == mark or key.startswith(f"{mark}.") or mark.startswith(f"{key}.")
            for mark in marked
        )
    )


def _reasons(policy: Policy, kind: str, facts: Facts, device_count: int) -> list[str]:
    reasons: list[str] = []
    if facts.criticality is not None and policy.command_threshold != CommandThreshold.NEVER:
        if policy.command_threshold == CommandThreshold.NORMAL:
            reasons.append("every command needs approval")
        elif facts.criticality == "critical":
            reasons.append("critical command")
    if policy.device_threshold is not None and device_count > policy.device_threshold:
        reasons.append(f"{device_count} devices (more than {policy.device_threshold})")
    if kind == CONFIGURATION_KIND:
        critical = _touches(facts.configuration_keys, policy.configuration_critical_keys)
        critical = sorted({*critical, *facts.critical_configuration_keys})
        if policy.configuration_always:
            reasons.append("every configuration change needs approval")
        elif critical:
            reasons.append(f"critical configuration keys: {', '.join(critical)}")
    return reasons


def required_approvals(request: ChangeRequest, facts: Facts, device_count: int) -> tuple[int, str]:
    """How many approvals ``request`` needs and why (``(0, "")`` when none)."""
    profiles: list[uuid.UUID | None] = [*sorted(facts.profile_ids)] or [None]
    best: tuple[int, str] = (0, "")
    for profile_id in profiles:
        policy = applicable_policy(organization=request.organization, profile_id=profile_id)
        reasons = _reasons(policy, request.kind, facts, device_count)
        if reasons and policy.approvals_required > best[0]:
            best = (policy.approvals_required, f"{'; '.join(reasons)} (policy {policy.name})")
    return best
