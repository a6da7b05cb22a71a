"""One filter language for the fleet: list filters, dynamic groups and bulk selections.

A selection is a JSON object; every key narrows the set (AND). Unknown keys are refused.

    {"state": ["active", "maintenance"], "profile": ["<uuid>"], "profile_version": ["<uuid>"],
     "tags_all": ["eu", "lobby"], "tags_any": ["beta"], "attributes": {"color": "red"},
     "firmware": ["1.2.0"], "connectivity": ["online"], "organization": ["<uuid>"],
     "bbox": [min_lat, min_lon, max_lat, max_lon], "search": "SN-00",
     "group": ["<uuid>"]}

``search`` matches a serial-number prefix or a name substring. ``organization`` includes the
organizations' subtrees. Every key maps to an indexed column.

``group`` matches the members of any of the groups named: a static group's memberships, or a
dynamic group's own filter (resolved recursively, at most ``MAX_GROUP_DEPTH`` levels deep; a
group that ends up referencing itself is refused). Either way only devices inside the group's
organization subtree count, exactly as ``apps.devices.groups.group_members`` sees them. Pass
``groups=`` (a queryset of the groups the caller may see) to refuse references to any other
group; without it, ids are trusted (callers that already scoped them).
"""

from __future__ import annotations

import uuid
from functools import reduce
from operator import and_, or_
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from apps.accounts.models import Organization

from .choices import Connectivity, DeviceState, GroupKind

KEYS = (
    "state",
    "profile",
    "profile_version",
    "tags_all",
    "tags_any",
    "attributes",
    "firmware",
    "connectivity",
    "organization",
    "bbox",
    "search",
    "group",
)
MAX_GROUP_DEPTH = 5


def _strings(spec: dict[str, Any], key: str) -> list[str]:
    value = spec[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError({key: "Must be a list of strings."})
    return value


def _uuids(spec: dict[str, Any], key: str) -> list[uuid.UUID]:
    try:
        return [uuid.UUID(item) for item in _strings(spec, key)]
    except ValueError:
        raise ValidationError({key: "Must be a list of ids."}) from None


def _choices(spec: dict[str, Any], key: str, allowed: list[str]) -> list[str]:
    values = _strings(spec, key)
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ValidationError({key: f"Unknown value(s): {', '.join(unknown)}."})
    return values


def _bbox(spec: dict[str, Any]) -> Q:
    box = spec["bbox"]
    if (
        not isinstance(box, list)
        or len(box) != 4
        or not all(isinstance(n, (int, float)) for n in box)
    ):
        raise ValidationError({"bbox": "Must be [min_lat, min_lon, max_lat, max_lon]."})
    min_lat, min_lon, max_lat, max_lon = box
    return Q(
        latitude__gte=min_lat, latitude__lte=max_lat, longitude__gte=min_lon, longitude__lte=max_lon
    )


def _organizations(spec: dict[str, Any]) -> Q:
    paths = list(
        Organization.objects.filter(pk__in=_uuids(spec, "organization")).values_list(
            "path", flat=True
        )
    )
    if not paths:
        return Q(pk__in=[])
    from apps.core.scoping import organization_ids_under

    return Q(organization__in=organization_ids_under(paths))


def _search(spec: dict[str, Any]) -> Q:
    text = spec["search"]
    if not isinstance(text, str) or len(text) > 128:
        raise ValidationError({"search": "Must be text of at most 128 characters."})
    text = text.strip()
    return Q(serial__startswith=text) | Q(name__icontains=text) if text else Q()


def selection_q(
    spec: dict[str, Any],
    *,
    groups: QuerySet[Any] | None = None,
    parents: tuple[uuid.UUID, ...] = (),
) -> Q:
    """The ``Q`` over ``Device`` for a selection; ValidationError names the bad key.

    ``parents`` are the groups whose filter ``spec`` is (a group being saved passes its own id,
    so a reference back to it is refused as a cycle).
    """
    if not isinstance(spec, dict):
        raise ValidationError({"filter": "Must be an object."})
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        raise ValidationError(dict.fromkeys(unknown, "Unknown filter."))
    parts: list[Q] = []
    if "state" in spec:
        parts.append(Q(state__in=_choices(spec, "state", DeviceState.values)))
    if "connectivity" in spec:
        parts.append(Q(connectivity__in=_choices(spec, "connectivity", Connectivity.values)))
    if "profile" in spec:
        parts.append(Q(profile_version__profile__in=_uuids(spec, "profile")))
    if "profile_version" in spec:
        parts.append(Q(profile_version__in=_uuids(spec, "profile_version")))
    if "tags_all" in spec:
        parts.append(Q(tags__contains=_strings(spec, "tags_all")))
    if "tags_any" in spec:
        parts.append(Q(tags__overlap=_strings(spec, "tags_any")))
    if "attributes" in spec:
        if not isinstance(spec["attributes"], dict):
            raise ValidationError({"attributes": "Must be an object of attribute values."})
        parts.append(Q(attributes__contains=spec["attributes"]))
    if "firmware" in spec:
        parts.append(Q(firmware_version__in=_strings(spec, "firmware")))
    if "organization" in spec:
        parts.append(_organizations(spec))
    if "bbox" in spec:
        parts.append(_bbox(spec))
    if "search" in spec:
        parts.append(_search(spec))
    if "group" in spec:
        parts.append(_groups(_uuids(spec, "group"), groups=groups, parents=parents))
    return reduce(and_, parts, Q())


def _groups(
    ids: list[uuid.UUID], *, groups: QuerySet[Any] | None, parents: tuple[uuid.UUID, ...]
) -> Q:
    """Members of any of the groups ``ids``: one query for the groups, then subqueries."""
    from apps.core.scoping import organization_ids_under

    from .models import Device, DeviceGroup, GroupMembership

    cycle = set(ids) & set(parents)
    if cycle:
        raise ValidationError({"group": "A group cannot contain itself (directly or not)."})
    if len(parents) >= MAX_GROUP_DEPTH:
        raise ValidationError({"group": f"Groups nest at most {MAX_GROUP_DEPTH} levels deep."})
    source = groups if groups is not None else DeviceGroup.objects.all()
    found = list(
        source.filter(pk__in=ids).values_list("pk", "kind", "filter", "organization__path")
    )
    if groups is not None and len(found) != len(set(ids)):
        raise ValidationError({"group": "Unknown group(s)."})
    conditions: list[Q] = []
    for pk, kind, saved, path in found:
        within = Q(organization__in=organization_ids_under([path]))
        if kind == GroupKind.DYNAMIC:
            nested = selection_q(saved, groups=groups, parents=(*parents, pk))
            members = Device.objects.filter(within & nested)
        else:
            members = Device.objects.filter(
                within, pk__in=GroupMembership.objects.filter(group=pk).values("device_id")
            )
        conditions.append(Q(pk__in=members.values("pk")))
    return reduce(or_, conditions) if conditions else Q(pk__in=[])
