"""Reads of the device catalog, always actor-scoped (shared-down profiles included for view)."""

from __future__ import annotations

from django.db.models import F, Prefetch, Q, QuerySet

from apps.accounts.models import Organization
from apps.core.actors import Actor
from apps.core.scoping import ancestor_ids, organization_ids_under

from .models import DeviceProfile, ProfileVersion


def _with_latest_version(profiles: QuerySet[DeviceProfile]) -> QuerySet[DeviceProfile]:
    latest = ProfileVersion.objects.filter(number=F("profile__latest_number"))
    return profiles.select_related("organization").prefetch_related(
        Prefetch("versions", queryset=latest, to_attr="latest_versions")
    )


def profile_list(*, actor: Actor, action: str = "view") -> QuerySet[DeviceProfile]:
    """Profiles ``actor`` may ``action``, each with its latest version prefetched."""
    return _with_latest_version(DeviceProfile.objects.for_actor(actor, action))


def profile_catalog(*, actor: Actor, organization: Organization) -> QuerySet[DeviceProfile]:
    """What ``organization`` can use: its subtree's profiles and those its ancestors share."""
    owners = Q(organization__in=organization_ids_under([organization.path]))
    ancestors = ancestor_ids([organization.path])
    if ancestors:
        owners |= Q(organization__in=ancestors)
    return profile_list(actor=actor).filter(owners).order_by("name", "id")


def latest_version(profile: DeviceProfile) -> ProfileVersion:
    """The latest version (prefetched by ``profile_list`` when available)."""
    prefetched: list[ProfileVersion] | None = getattr(profile, "latest_versions", None)
    if prefetched:
        return prefetched[0]
    return ProfileVersion.objects.get(profile=profile, number=profile.latest_number)


def version_list(*, actor: Actor, profile: DeviceProfile) -> QuerySet[ProfileVersion]:
    return (
        ProfileVersion.objects.for_actor(actor, "view")
        .filter(profile=profile)
        .select_related("created_by")
        .order_by("-number")
    )
