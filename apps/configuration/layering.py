"""The effective configuration of devices, computed a batch at a time.

Weakest first: profile defaults (``default`` in the profile version's configuration schema),
the provisioning template's configuration (what activation recorded on the device, else what
it would get), the organization layers from the top of the tree down to the device's
organization, the group layers in ascending ``priority`` (ties by group name), then the device
overrides. Objects merge key by key; lists and scalars replace. Then ``{{ ... }}``
placeholders in strings are filled from the variables (``docs/configuration.md``) and the
document is validated against the profile version's ``configuration_schema``.

Reads are per batch, never per device: one query per kind of layer plus two per group layer.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet
from jsonschema import Draft202012Validator

from apps.accounts.models import Organization
from apps.core.scoping import organization_ids_under
from apps.devices import provisioning
from apps.devices.choices import DeviceState
from apps.devices.models import Device, DeviceGroup
from apps.devices.selection import selection_q
from apps.profiles.models import ProfileVersion

from . import documents
from .choices import Layer
from .models import DeviceConfiguration, GroupConfiguration, OrganizationConfiguration

INELIGIBLE_STATES = (DeviceState.DECOMMISSIONED, DeviceState.REPLACED)
RESERVED_DEVICE_NAMES = ("id", "serial", "name", "tags", "attributes", "profile")


@dataclass(frozen=True)
class LayerChange:
    """A change to one layer (a configuration change request's ``set``), applied in memory for
    validation and previews, and for real when executed."""

    layer: str
    layer_id: uuid.UUID
    values: dict[str, Any] = field(default_factory=dict)
    unset: tuple[str, ...] = ()
    variables: dict[str, Any] = field(default_factory=dict)
    unset_variables: tuple[str, ...] = ()
    priority: int | None = None

    def apply(self, values: dict[str, Any], variables: dict[str, Any]) -> tuple[dict, dict]:  # type: ignore[type-arg]
        """The layer's new (values, variables), fresh copies (``unset`` edits them)."""
        new_values = copy.deepcopy(documents.deep_merge(values, self.values))
        for path in self.unset:
            documents.unset_path(new_values, path)
        new_variables = copy.deepcopy(documents.deep_merge(variables, self.variables))
        for path in self.unset_variables:
            documents.unset_path(new_variables, path)
        return new_values, new_variables


@dataclass
class Effective:
    """One device's effective configuration; ``errors`` when it cannot be built or breaks
    the schema (``document`` is then what could be built)."""

    device_id: uuid.UUID
    organization_id: uuid.UUID
    serial: str
    document: dict[str, Any]
    checksum: str = ""
    errors: list[str] = field(default_factory=list)
    pinned_version: int | None = None


@dataclass
class _Layers:
    organizations: dict[uuid.UUID, dict[str, Any]]  # id -> {"path", "name"}
    organization_layers: dict[uuid.UUID, tuple[dict[str, Any], dict[str, Any]]]
    groups: list[tuple[int, str, dict[str, Any], dict[str, Any], set[uuid.UUID]]]
    device_layers: dict[uuid.UUID, DeviceConfiguration]
    versions: dict[uuid.UUID, ProfileVersion]
    defaults: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)  # per version


def affected_devices(*, layer: str, layer_id: uuid.UUID) -> QuerySet[Device]:
    """The devices a layer applies to now (decommissioned and replaced ones left out)."""
    devices = Device.objects.exclude(state__in=INELIGIBLE_STATES)
    if layer == Layer.DEVICE:
        return devices.filter(pk=layer_id)
    if layer == Layer.GROUP:
        return devices.filter(selection_q({"group": [str(layer_id)]}))
    path = Organization.objects.filter(pk=layer_id).values_list("path", flat=True).first()
    if path is None:
        return devices.none()
    return devices.filter(organization__in=organization_ids_under([path]))


def compute(
    device_ids: Iterable[uuid.UUID], *, change: LayerChange | None = None
) -> dict[uuid.UUID, Effective]:
    """The effective configuration of each device (with ``change`` applied in memory)."""
    ids = list(device_ids)
    rows = list(
        Device.objects.filter(pk__in=ids).values(
            "id",
            "serial",
            "name",
            "tags",
            "attributes",
            "provisioning",
            "organization_id",
            "profile_version_id",
        )
    )
    if not rows:
        return {}
    layers = _load(rows, ids, change)
    templates: dict[tuple[uuid.UUID, uuid.UUID], dict[str, Any]] = {}
    validators: dict[uuid.UUID, Draft202012Validator] = {}
    return {row["id"]: _effective(row, layers, change, templates, validators) for row in rows}


def _load(rows: list[dict[str, Any]], ids: list[uuid.UUID], change: LayerChange | None) -> _Layers:
    organization_ids = {row["organization_id"] for row in rows}
    paths = Organization.objects.filter(pk__in=organization_ids).values_list("path", flat=True)
    along = {uuid.UUID(part) for path in paths for part in path.split("/") if part}
    organizations = {
        row["id"]: row
        for row in Organization.objects.filter(pk__in=along).values("id", "path", "name")
    }
    organization_layers = {
        layer.organization_id: (layer.values, layer.variables)
        for layer in OrganizationConfiguration.objects.filter(organization_id__in=along)
    }
    device_layers = {
        layer.device_id: layer for layer in DeviceConfiguration.objects.filter(device_id__in=ids)
    }
    versions = ProfileVersion.objects.select_related("profile").in_bulk(
        {row["profile_version_id"] for row in rows}
    )
    return _Layers(
        organizations=organizations,
        organization_layers=organization_layers,
        groups=_group_layers(along, ids, change),
        device_layers=device_layers,
        versions=versions,
    )


def _group_layers(
    along: set[uuid.UUID], ids: list[uuid.UUID], change: LayerChange | None
) -> list[tuple[int, str, dict[str, Any], dict[str, Any], set[uuid.UUID]]]:
    """(priority, name, values, variables, member ids among ``ids``), weakest first."""
    found: dict[uuid.UUID, tuple[int, str, dict[str, Any], dict[str, Any]]] = {
        layer.group_id: (layer.priority, layer.group.name, layer.values, layer.variables)
        for layer in GroupConfiguration.objects.filter(
            group__organization_id__in=along
        ).select_related("group")
    }
    if change is not None and change.layer == Layer.GROUP and change.layer_id not in found:
        group = DeviceGroup.objects.filter(pk=change.layer_id, organization_id__in=along).first()
        if group is not None:
            found[group.pk] = (0, group.name, {}, {})
    layers = []
    for group_id, (priority, name, values, variables) in found.items():
        if change is not None and change.layer == Layer.GROUP and change.layer_id == group_id:
            values, variables = change.apply(values, variables)
            priority = priority if change.priority is None else change.priority
        members = set(
            Device.objects.filter(pk__in=ids)
            .filter(selection_q({"group": [str(group_id)]}))
            .values_list("pk", flat=True)
        )
        if members:
            layers.append((priority, name, values, variables, members))
    layers.sort(key=lambda layer: (layer[0], layer[1]))
    return layers


def _template(row: dict[str, Any], layers: _Layers, cache: dict[Any, Any]) -> dict[str, Any]:
    if row["provisioning"]:
        return dict(row["provisioning"].get("configuration") or {})
    key = (row["organization_id"], row["profile_version_id"])
    if key not in cache:
        organization = Organization.objects.get(pk=row["organization_id"])
        version = layers.versions[row["profile_version_id"]]
        cache[key] = provisioning.resolve(organization, version)["configuration"]
    return dict(cache[key])


@dataclass
class _Merge:
    """The layers merged for one device, before variables are filled."""

    document: dict[str, Any]
    organization_variables: dict[str, Any]
    group_variables: dict[str, Any]


def _merge(
    row: dict[str, Any], layers: _Layers, change: LayerChange | None, templates: dict[Any, Any]
) -> _Merge:
    """Defaults, template, organizations (top down), groups (by priority), in that order."""
    version = layers.versions[row["profile_version_id"]]
    defaults = layers.defaults.get(version.pk)
    if defaults is None:
        defaults = layers.defaults[version.pk] = documents.schema_defaults(
            version.configuration_schema
        )
    merged = _Merge(documents.deep_merge(defaults, _template(row, layers, templates)), {}, {})
    for organization_id in _path_ids(layers, row["organization_id"]):
        values, variables = layers.organization_layers.get(organization_id, ({}, {}))
        if change is not None and (change.layer, change.layer_id) == (
            Layer.ORGANIZATION,
            organization_id,
        ):
            values, variables = change.apply(values, variables)
        merged.document = documents.deep_merge(merged.document, values)
        merged.organization_variables = documents.deep_merge(
            merged.organization_variables, variables
        )
    for _priority, _name, values, variables, members in layers.groups:
        if row["id"] in members:
            merged.document = documents.deep_merge(merged.document, values)
            merged.group_variables = documents.deep_merge(merged.group_variables, variables)
    return merged


def _names(
    row: dict[str, Any], layers: _Layers, merged: _Merge, device_variables: dict[str, Any]
) -> dict[str, Any]:
    """What placeholders may name (docs/configuration.md, Variables)."""
    organization = layers.organizations[row["organization_id"]]
    version = layers.versions[row["profile_version_id"]]
    return {
        "device": {
            **device_variables,
            **{key: row[key] for key in ("serial", "name", "tags", "attributes")},
            "id": str(row["id"]),
            "profile": version.profile.slug,
        },
        "org": {
            **merged.organization_variables,
            "id": str(organization["id"]),
            "name": organization["name"],
        },
        "group": merged.group_variables,
        "var": documents.deep_merge(
            documents.deep_merge(merged.organization_variables, merged.group_variables),
            device_variables,
        ),
    }


def _effective(
    row: dict[str, Any],
    layers: _Layers,
    change: LayerChange | None,
    templates: dict[Any, Any],
    validators: dict[uuid.UUID, Draft202012Validator],
) -> Effective:
    device_id = row["id"]
    result = Effective(
        device_id=device_id,
        organization_id=row["organization_id"],
        serial=row["serial"],
        document={},
    )
    own = layers.device_layers.get(device_id)
    overrides, device_variables = (own.overrides, own.variables) if own else ({}, {})
    if change is not None and (change.layer, change.layer_id) == (Layer.DEVICE, device_id):
        overrides, device_variables = change.apply(overrides, device_variables)
    elif own is not None and own.pinned_document is not None:  # a rollback pinned it
        result.document, result.pinned_version = own.pinned_document, own.pinned_version
        result.checksum = documents.canonical_checksum(result.document)
        return result
    merged = _merge(row, layers, change, templates)
    document = documents.deep_merge(merged.document, overrides)
    try:
        result.document = documents.render(document, _names(row, layers, merged, device_variables))
    except documents.UnknownVariable as error:
        result.document = document
        result.errors.append(str(error))
        return result
    version = layers.versions[row["profile_version_id"]]
    validator = validators.get(version.pk)
    if validator is None:
        validator = validators[version.pk] = Draft202012Validator(version.configuration_schema)
    result.errors = schema_errors(validator, result.document)
    result.checksum = documents.canonical_checksum(result.document)
    return result


def _path_ids(layers: _Layers, organization_id: uuid.UUID) -> list[uuid.UUID]:
    path = layers.organizations[organization_id]["path"]
    return [uuid.UUID(part) for part in path.split("/") if part]


def schema_errors(validator: Draft202012Validator, document: dict[str, Any]) -> list[str]:
    """Readable schema errors, each prefixed with the dotted path it is about."""
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
    return [
        f"{'.'.join(str(part) for part in error.absolute_path) or '(root)'}: {error.message}"
        for error in errors
    ]
