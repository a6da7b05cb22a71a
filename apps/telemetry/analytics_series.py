"""Which devices an analytics query reads, and the series each one belongs to.

The devices are those the actor may view (``Device.objects.for_actor``) in organizations where
the actor also holds ``telemetry.view``, narrowed by the query's filters. A filter naming a
device, profile, group or organization outside that scope is ``Http404``: whether it exists
elsewhere never shows.

Series keys, by ``group_by``:

- ``none``: one series, ``all``;
- ``device``: the device id (label: serial, and name when it has one);
- ``profile``: the device profile's id (every version of a profile is one series);
- ``group``: each group the actor sees that holds the device, static (its memberships) or
  dynamic (its saved filter), as ``apps.devices.selection`` resolves them; a device in two
  groups counts in both;
- ``organization``: the device's own organization;
- ``location``: ``site:<id>`` when the device has a site, else the 1-degree latitude /
  longitude cell of its position (``cell:<lat>:<lon>``, the cell's south-west corner), else
  ``none``.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import BooleanField, ExpressionWrapper, Q, QuerySet
from django.http import Http404

from apps.accounts.models import Organization
from apps.core.actors import Actor
from apps.core.scoping import organization_ids_under
from apps.devices.choices import GroupKind
from apps.devices.models import Device, DeviceGroup, GroupMembership
from apps.devices.selection import selection_q
from apps.profiles.models import DeviceProfile

if TYPE_CHECKING:
    from .analytics import AggregateQuery

__all__ = ["GROUP_BY", "SeriesMap", "series_map", "telemetry_devices"]

GROUP_BY = ("none", "device", "profile", "group", "organization", "location")
CELL_DEGREES = 1.0


def max_devices() -> int:
    return int(getattr(settings, "TELEMETRY_ANALYTICS_MAX_DEVICES", 10_000))


def max_series() -> int:
    return int(getattr(settings, "TELEMETRY_ANALYTICS_MAX_SERIES", 100))


@dataclass(frozen=True)
class SeriesMap:
    """(device id, series key) pairs (a device may be in several series), the distinct device
    ids, and each key's label."""

    pairs: list[tuple[uuid.UUID, str]]
    device_ids: list[uuid.UUID]
    labels: dict[str, str]


def telemetry_devices(actor: Actor) -> QuerySet[Device]:
    """Devices whose telemetry ``actor`` may read: viewable devices of organizations where the
    actor holds ``telemetry.view`` (an API key narrowed to the registry reads no telemetry)."""
    devices = Device.objects.for_actor(actor, "view")
    if actor.is_platform_staff:
        return devices
    known = actor.subtree_ids_for("telemetry.view")
    if known is not None:
        return devices.filter(organization__in=known)
    paths = actor.paths_for("telemetry.view")
    if not paths:
        return devices.none()
    return devices.filter(organization__in=organization_ids_under(paths))


def _filtered(actor: Actor, query: AggregateQuery) -> QuerySet[Device]:
    devices = telemetry_devices(actor)
    if query.devices:
        devices = devices.filter(pk__in=query.devices)
        if devices.count() != len(query.devices):
            raise Http404("No such device.")
    if query.profile is not None:
        if not DeviceProfile.objects.for_actor(actor, "view").filter(pk=query.profile).exists():
            raise Http404("No such profile.")
        devices = devices.filter(profile_version__profile=query.profile)
    if query.group is not None:
        visible = DeviceGroup.objects.for_actor(actor, "view")
        if not visible.filter(pk=query.group).exists():
            raise Http404("No such group.")
        devices = devices.filter(selection_q({"group": [str(query.group)]}, groups=visible))
    if query.organization is not None:
        organization = (
            Organization.objects.for_actor(actor, "view").filter(pk=query.organization).first()
        )
        if organization is None:
            raise Http404("No such organization.")
        devices = devices.filter(organization__in=organization_ids_under([organization.path]))
    return devices.order_by()


def series_map(*, actor: Actor, query: AggregateQuery) -> SeriesMap:
    """The devices ``query`` reads with their series; ValidationError past the limits."""
    devices = _filtered(actor, query)
    pairs, labels = KEYS[query.group_by](actor, query, devices)
    device_ids = list(dict.fromkeys(device_id for device_id, _ in pairs))
    if len(device_ids) > max_devices():
        raise ValidationError(
            {
                "device": f"{len(device_ids)} devices; at most {max_devices()} per query: narrow "
                "it with device, profile, group or organization."
            }
        )
    if len(labels) > max_series():
        raise ValidationError(
            {
                "group_by": f"{len(labels)} series; at most {max_series()} per query: narrow it "
                "with device, profile, group or organization."
            }
        )
    return SeriesMap(pairs=pairs, device_ids=device_ids, labels=labels)


Pairs = tuple[list[tuple[uuid.UUID, str]], dict[str, str]]


# Each reads at most one device more than allowed: enough to refuse, never the whole fleet.
def _none(actor: Actor, query: AggregateQuery, devices: QuerySet[Device]) -> Pairs:
    ids = list(devices.values_list("pk", flat=True)[: max_devices() + 1])
    return [(device_id, "all") for device_id in ids], ({"all": "All devices"} if ids else {})


def _device(actor: Actor, query: AggregateQuery, devices: QuerySet[Device]) -> Pairs:
    rows = devices.values_list("pk", "serial", "name")[: max_devices() + 1]
    pairs, labels = [], {}
    for device_id, serial, name in rows:
        key = str(device_id)
        pairs.append((device_id, key))
        labels[key] = f"{serial} ({name})" if name else serial
    return pairs, labels


def _by_column(column: str, name: str) -> Any:
    def keys(actor: Actor, query: AggregateQuery, devices: QuerySet[Device]) -> Pairs:
        rows = devices.values_list("pk", column, name)[: max_devices() + 1]
        pairs, labels = [], {}
        for device_id, key, label in rows:
            pairs.append((device_id, str(key)))
            labels[str(key)] = label
        return pairs, labels

    return keys


def _location(actor: Actor, query: AggregateQuery, devices: QuerySet[Device]) -> Pairs:
    rows = devices.values_list("pk", "site_id", "site__name", "latitude", "longitude")
    pairs, labels = [], {}
    for device_id, site_id, site_name, latitude, longitude in rows[: max_devices() + 1]:
        key, label = location_key(site_id, site_name, latitude, longitude)
        pairs.append((device_id, key))
        labels[key] = label
    return pairs, labels


def location_key(
    site_id: uuid.UUID | None,
    site_name: str | None,
    latitude: float | None,
    longitude: float | None,
) -> tuple[str, str]:
    """A device's location series: its site, else its grid cell, else none."""
    if site_id is not None:
        return f"site:{site_id}", str(site_name)
    if latitude is None or longitude is None:
        return "none", "No location"
    south = math.floor(latitude / CELL_DEGREES) * CELL_DEGREES
    west = math.floor(longitude / CELL_DEGREES) * CELL_DEGREES
    label = f"{abs(south):g}°{'N' if south >= 0 else 'S'} {abs(west):g}°{'E' if west >= 0 else 'W'}"
    return f"cell:{south:g}:{west:g}", label


def _group(actor: Actor, query: AggregateQuery, devices: QuerySet[Device]) -> Pairs:
    """Membership of each visible group (or only the filtered one), in one statement: a
    boolean column per group, each an uncorrelated subquery PostgreSQL hashes once."""
    visible = DeviceGroup.objects.for_actor(actor, "view")
    groups = visible.filter(pk=query.group) if query.group else visible
    chosen = list(
        groups.order_by("name").values_list("pk", "name", "kind", "filter", "organization__path")[
            : max_series() + 1
        ]
    )
    if len(chosen) > max_series():
        raise ValidationError(
            {"group_by": f"More than {max_series()} groups: pick one with group."}
        )
    if not chosen:
        return [], {}
    columns = {
        f"g{index}": ExpressionWrapper(
            _members(pk, kind, saved, path, visible), output_field=BooleanField()
        )
        for index, (pk, _, kind, saved, path) in enumerate(chosen)
    }
    rows = devices.annotate(**columns).values_list("pk", *columns)[: max_devices() + 1]
    pairs: list[tuple[uuid.UUID, str]] = []
    for device_id, *member in rows:
        pairs.extend((device_id, str(chosen[i][0])) for i, flag in enumerate(member) if flag)
    present = {key for _, key in pairs}
    labels = {str(pk): name for pk, name, *_ in chosen if str(pk) in present}
    return pairs, labels


def _members(
    pk: uuid.UUID, kind: str, saved: dict[str, Any], path: str, visible: QuerySet[DeviceGroup]
) -> Q:
    """A group's members as ``apps.devices.selection`` defines them (only devices inside the
    group's organization subtree), from the group row already read: no query per group."""
    within = Q(organization__in=organization_ids_under([path]))
    if kind == GroupKind.DYNAMIC:
        members = Device.objects.filter(within & selection_q(saved, groups=visible, parents=(pk,)))
    else:
        members = Device.objects.filter(
            within, pk__in=GroupMembership.objects.filter(group=pk).values("device_id")
        )
    return Q(pk__in=members.values("pk"))


KEYS = {
    "none": _none,
    "device": _device,
    "profile": _by_column("profile_version__profile_id", "profile_version__profile__name"),
    "group": _group,
    "organization": _by_column("organization_id", "organization__name"),
    "location": _location,
}
