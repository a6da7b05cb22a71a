"""Device groups: static lists and dynamic saved filters, and sharing them.

Writes (``group_*`` services) run in one transaction with their audit record and domain event.
Reads are actor-scoped:

- ``group_list`` is ``for_actor(actor, "view")``: the groups of the
  organizations where the actor's role holds ``devicegroup.view``, plus the groups shared with
  the actor's user or with an organization in which the actor holds that permission
  (django-guardian grants in the direct foreign-key tables).
- ``group_members`` is always computed, never stored for a dynamic group: the devices matching
  the group's filter right now. Members are limited to the group's organization subtree and,
  when the actor sees the group through its role, to the devices the actor may view. When the
  actor sees the group only because it was *shared* with them, the member list is the one place
  where devices outside their own scope become visible (read-only): the share is the grant.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from guardian.shortcuts import assign_perm, remove_perm

from apps.accounts.models import Organization, User
from apps.core import audit, events
from apps.core.actors import Actor
from apps.core.scoping import organization_ids_under

from .choices import GroupKind
from .models import (
    Device,
    DeviceGroup,
    DeviceGroupGroupObjectPermission,
    DeviceGroupUserObjectPermission,
    GroupMembership,
)
from .selection import selection_q

GROUP_FIELDS = ("organization", "name", "description", "kind", "filter")
SHARE_PERMISSIONS = ("view", "change")
MAX_DEVICES_PER_CALL = 10_000


@dataclass(frozen=True)
class MembershipChange:
    """Result of adding or removing devices: how many changed, which ids were refused."""

    count: int
    rejected: list[uuid.UUID]


@dataclass(frozen=True)
class Share:
    """One user or organization a group is shared with, and the actions granted."""

    permissions: list[str]
    user: User | None = None
    organization: Organization | None = None


# --- reads -------------------------------------------------------------------------------------


def group_list(*, actor: Actor, action: str = "view") -> QuerySet[DeviceGroup]:
    """Groups the actor may ``action``: role scope plus guardian grants. ``for_actor`` words the
    grants so that indexes serve them, and a plain page by name takes only its first grants (the
    grant rows carry the group's name): a page costs the same with 0 or 1,000 grants."""
    scoped = DeviceGroup.objects.for_actor(actor, action)
    return scoped.select_related("organization")


def group_members(*, actor: Actor, group: DeviceGroup) -> QuerySet[Device]:
    """The group's current members as the actor may see them (the caller resolved ``group``
    through ``group_list``, so the actor sees the group)."""
    path = group.organization.path
    within = Device.objects.filter(organization__in=organization_ids_under([path]))
    if group.kind == GroupKind.DYNAMIC:
        members = within.filter(selection_q(group.filter, parents=(group.pk,)))
    else:
        members = within.filter(
            pk__in=GroupMembership.objects.filter(group=group).values("device_id")
        )
    if actor.has_perm("devicegroup.view", path):  # seen through the role: own device scope
        members = members.filter(pk__in=Device.objects.for_actor(actor, "view").values("pk"))
    return members.order_by("-id")


def group_shares(*, group: DeviceGroup) -> list[Share]:
    """Who the group is shared with: users first (by email), then organizations (by name)."""
    users: dict[uuid.UUID, set[str]] = {}
    for user_id, codename in DeviceGroupUserObjectPermission.objects.filter(
        content_object=group
    ).values_list("user_id", "permission__codename"):
        users.setdefault(user_id, set()).add(codename.split("_", 1)[0])
    groups: dict[int, set[str]] = {}
    for group_id, codename in DeviceGroupGroupObjectPermission.objects.filter(
        content_object=group
    ).values_list("group_id", "permission__codename"):
        groups.setdefault(group_id, set()).add(codename.split("_", 1)[0])
    shares = [
        Share(permissions=sorted(users[user.pk]), user=user)
        for user in User.objects.filter(pk__in=users).order_by("email")
    ]
    shares += [
        Share(permissions=sorted(groups[org.auth_group_id]), organization=org)
        for org in Organization.objects.filter(auth_group__in=groups).order_by("name")
        if org.auth_group_id is not None
    ]
    return shares


# --- checks ------------------------------------------------------------------------------------


def _require(actor: Actor, group: DeviceGroup, action: str) -> None:
    if not group_list(actor=actor, action=action).filter(pk=group.pk).exists():
        raise PermissionDenied(f"You may not {action} this group.")


def _checked_filter(
    actor: Actor, kind: str, spec: Any, group_id: uuid.UUID | None
) -> dict[str, Any]:
    """A dynamic group's filter, validated; errors are reported as ``filter.<key>``."""
    if kind != GroupKind.DYNAMIC:
        if spec:
            raise ValidationError({"filter": "Only a dynamic group has a filter."})
        return {}
    try:
        selection_q(
            spec,
            groups=group_list(actor=actor),
            parents=(group_id,) if group_id is not None else (),
        )
    except ValidationError as error:
        raise ValidationError(
            {
                key if key == "filter" else f"filter.{key}": messages
                for key, messages in error.message_dict.items()
            }
        ) from None
    return dict(spec)


def _check_name(group: DeviceGroup) -> None:
    if not group.name.strip():
        raise ValidationError({"name": "This field may not be blank."})
    taken = DeviceGroup.objects.filter(organization=group.organization_id, name=group.name)
    if taken.exclude(pk=group.pk).exists():
        raise ValidationError({"name": "A group with this name already exists here."})


def _payload(group: DeviceGroup, **extra: Any) -> dict[str, Any]:
    return {"id": str(group.pk), "name": group.name, "kind": group.kind, **extra}


# --- writes ------------------------------------------------------------------------------------


@transaction.atomic
def group_create(
    *,
    actor: Actor,
    organization: Organization,
    name: str,
    description: str = "",
    kind: str = GroupKind.STATIC,
    filter: dict[str, Any] | None = None,
) -> DeviceGroup:
    """Create a static group, or a dynamic one whose (validated) filter defines its members."""
    if not actor.has_perm("devicegroup.add", organization.path):
        raise PermissionDenied("You may not add groups here.")
    if kind not in GroupKind.values:
        raise ValidationError({"kind": f"Must be one of: {', '.join(GroupKind.values)}."})
    group = DeviceGroup(
        organization=organization, name=name.strip(), description=description, kind=kind
    )
    group.filter = _checked_filter(actor, kind, filter or {}, group.pk)
    _check_name(group)
    group.save()
    audit.record(
        actor=actor,
        action="devicegroup.create",
        obj=group,
        changes=audit.diff({}, audit.snapshot(group, GROUP_FIELDS)),
    )
    events.emit(
        "group.created",
        organization_id=organization.pk,
        payload=_payload(group, filter=group.filter),
        subject=group,
    )
    return group


@transaction.atomic
def group_update(*, actor: Actor, group: DeviceGroup, **fields: Any) -> DeviceGroup:
    """Change name, description or (dynamic groups) filter. The kind never changes."""
    unknown = set(fields) - {"name", "description", "filter"}
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "This field cannot be changed."))
    _require(actor, group, "change")
    group = (
        DeviceGroup.objects.select_for_update(of=("self",))
        .select_related("organization")
        .get(pk=group.pk)
    )
    before = audit.snapshot(group, GROUP_FIELDS)
    if "name" in fields:
        group.name = fields["name"].strip()
        _check_name(group)
    if "description" in fields:
        group.description = fields["description"]
    if "filter" in fields and fields["filter"] != group.filter:
        # A "change" share must not widen what the grantee sees: only the owning side edits it.
        if not actor.has_perm("devicegroup.change", group.organization.path):
            raise PermissionDenied("Only the group's organization may change its filter.")
        group.filter = _checked_filter(actor, group.kind, fields["filter"], group.pk)
    group.save()
    changes = audit.diff(before, audit.snapshot(group, GROUP_FIELDS))
    if changes:
        audit.record(actor=actor, action="devicegroup.update", obj=group, changes=changes)
        events.emit(
            "group.updated",
            organization_id=group.organization_id,
            payload=_payload(group, changes=changes),
            subject=group,
        )
    return group


@transaction.atomic
def group_delete(*, actor: Actor, group: DeviceGroup) -> None:
    """Delete a group with its memberships and shares (devices are untouched). A dynamic group
    that referenced it simply stops matching through it."""
    _require(actor, group, "delete")
    audit.record(
        actor=actor,
        action="devicegroup.delete",
        obj=group,
        changes=audit.diff(audit.snapshot(group, GROUP_FIELDS), {}),
    )
    events.emit("group.deleted", organization_id=group.organization_id, payload=_payload(group))
    group.delete()


def _static_for_change(actor: Actor, group: DeviceGroup, device_ids: Iterable[uuid.UUID]) -> Any:
    _require(actor, group, "change")
    if group.kind != GroupKind.STATIC:
        raise ValidationError({"devices": "A dynamic group's members come from its filter."})
    wanted = set(device_ids)
    if len(wanted) > MAX_DEVICES_PER_CALL:
        raise ValidationError({"devices": f"At most {MAX_DEVICES_PER_CALL} devices per call."})
    DeviceGroup.objects.select_for_update(of=("self",)).filter(pk=group.pk).get()
    eligible = Device.objects.for_actor(actor, "view").filter(
        pk__in=wanted,
        organization__in=organization_ids_under([group.organization.path]),
    )
    return wanted, eligible


def _record_membership(
    actor: Actor, group: DeviceGroup, verb: str, changed: list[uuid.UUID]
) -> None:
    audit.record(
        actor=actor,
        action=f"devicegroup.{verb}_devices",
        obj=group,
        changes={"devices": [None, sorted(str(pk) for pk in changed)]},
    )
    events.emit(
        f"group.devices_{'added' if verb == 'add' else 'removed'}",
        organization_id=group.organization_id,
        payload=_payload(group, count=len(changed)),
        subject=group,
    )


@transaction.atomic
def group_add_devices(
    *, actor: Actor, group: DeviceGroup, device_ids: Iterable[uuid.UUID]
) -> MembershipChange:
    """Add devices to a static group in one INSERT ... ON CONFLICT DO NOTHING. Devices the actor
    cannot see or outside the group's organization subtree are rejected."""
    wanted, eligible = _static_for_change(actor, group, device_ids)
    accepted = set(eligible.values_list("pk", flat=True))
    present = set(
        GroupMembership.objects.filter(group=group, device__in=accepted).values_list(
            "device_id", flat=True
        )
    )
    new = sorted(accepted - present)
    GroupMembership.objects.bulk_create(
        [GroupMembership(group=group, device_id=pk) for pk in new], ignore_conflicts=True
    )
    if new:
        _record_membership(actor, group, "add", new)
    return MembershipChange(count=len(new), rejected=sorted(wanted - accepted))


@transaction.atomic
def group_remove_devices(
    *, actor: Actor, group: DeviceGroup, device_ids: Iterable[uuid.UUID]
) -> MembershipChange:
    """Remove devices from a static group; ids that are not visible members are rejected."""
    wanted, eligible = _static_for_change(actor, group, device_ids)
    memberships = GroupMembership.objects.filter(group=group, device__in=eligible.values("pk"))
    removed = sorted(memberships.values_list("device_id", flat=True))
    GroupMembership.objects.filter(group=group, device_id__in=removed).delete()
    if removed:
        _record_membership(actor, group, "remove", removed)
    return MembershipChange(count=len(removed), rejected=sorted(wanted - set(removed)))


# --- sharing -----------------------------------------------------------------------------------


def organization_auth_group(organization: Organization) -> Group:
    """The auth group standing for ``organization`` in guardian grants (created on first use,
    under a row lock so two concurrent first shares create one group). Read from the database,
    never from a possibly stale instance."""
    locked = Organization.objects.select_for_update(of=("self",)).get(pk=organization.pk)
    if locked.auth_group_id is not None:
        return Group.objects.get(pk=locked.auth_group_id)
    group, _ = Group.objects.get_or_create(name=f"org:{organization.pk}")
    Organization.objects.filter(pk=locked.pk).update(auth_group=group)
    return group


def _share_target(user: User | None, organization: Organization | None) -> User | Group:
    if (user is None) == (organization is None):
        raise ValidationError({"non_field_errors": "Share with either a user or an organization."})
    if organization is not None:
        return organization_auth_group(organization)
    assert user is not None  # for mypy: checked just above
    return user


def _target_repr(user: User | None, organization: Organization | None) -> dict[str, str]:
    if user is not None:
        return {"user": str(user.pk), "email": user.email}
    assert organization is not None
    return {"organization": str(organization.pk), "name": organization.name}


@transaction.atomic
def group_share(
    *,
    actor: Actor,
    group: DeviceGroup,
    user: User | None = None,
    organization: Organization | None = None,
    permission: str = "view",
) -> list[str]:
    """Share with one user or one organization; "change" implies "view". Returns the actions
    the target now holds on the group."""
    _require(actor, group, "share")
    if permission not in SHARE_PERMISSIONS:
        raise ValidationError({"permission": f"Must be one of: {', '.join(SHARE_PERMISSIONS)}."})
    target = _share_target(user, organization)
    granted = ["view"] if permission == "view" else ["change", "view"]
    for action in granted:
        assign_perm(f"{action}_devicegroup", target, group)
    who = _target_repr(user, organization)
    audit.record(
        actor=actor,
        action="devicegroup.share",
        obj=group,
        changes={"shared": [None, who | {"permissions": granted}]},
    )
    events.emit(
        "group.shared",
        organization_id=group.organization_id,
        payload=_payload(group, target=who, permissions=granted),
        subject=group,
    )
    return granted


@transaction.atomic
def group_unshare(
    *,
    actor: Actor,
    group: DeviceGroup,
    user: User | None = None,
    organization: Organization | None = None,
) -> int:
    """Withdraw every grant the user or organization holds on the group; returns how many."""
    _require(actor, group, "share")
    target = _share_target(user, organization)
    rows = (
        DeviceGroupUserObjectPermission.objects.filter(user=target)
        if isinstance(target, User)
        else DeviceGroupGroupObjectPermission.objects.filter(group=target)
    ).filter(content_object=group)
    codenames = sorted(rows.values_list("permission__codename", flat=True))
    for codename in codenames:
        remove_perm(codename, target, group)
    if codenames:
        who = _target_repr(user, organization)
        audit.record(
            actor=actor,
            action="devicegroup.unshare",
            obj=group,
            changes={"shared": [who | {"permissions": [c.split("_")[0] for c in codenames]}, None]},
        )
        events.emit(
            "group.unshared",
            organization_id=group.organization_id,
            payload=_payload(group, target=who),
            subject=group,
        )
    return len(codenames)
