"""One filter language for the fleet: list filters, dynamic groups and bulk selections.

A selection is a JSON object; every key narrows the set (AND). Unknown keys are refused.

    {"state": ["active", "maintenance"], "profile": ["<uuid>"], "profile_version": ["<uuid>"],
     "tags_all": ["eu", "lobby"], "tags_any": ["beta"], "attributes": {"color": "red"},
     "firmware": ["1.2.0"], "connectivity": ["online"], "organization": ["<uuid>"],
     "bbox": [min_lat, min_lon, max_lat, max_lon], "search": "SN-00",
     "group": ["<uuid>"]}

``search`` matches a serial-number prefix or a name substring. ``organization`` includes the
organizations' subtrees. Every key maps to an indexed column.
"""

from __future__ import annotations

import uuid
from functools import reduce
from operator import and_
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import Q

from apps.accounts.models import Organization

from .choices import Connectivity, DeviceState

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


def selection_q(spec: dict[str, Any]) -> Q:
    """The ``Q`` over ``Device`` for a selection; ValidationError names the bad key."""
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
        from .models import GroupMembership

        members = GroupMembership.objects.filter(group__in=_uuids(spec, "group"))
        parts.append(Q(pk__in=members.values("device_id")))
    return reduce(and_, parts, Q())
