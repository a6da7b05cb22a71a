"""The ``configuration`` change-request kind (registered in ``ConfigurationConfig.ready``).

Specs::

    {"operation": "set", "layer": "organization"|"group"|"device", "layer_id": uuid,
     "values": {...}, "unset": ["dotted.path"], "variables": {...}, "unset_variables": [...],
     "priority": int (group layer only, optional)}
    {"operation": "rollback", "device": uuid, "version": n}

A ``set`` is valid only if the effective configuration of every device the layer applies to
still passes its profile's schema with the change; executing it writes the layer and gives
every device whose effective configuration changed a new version (``services.recompute``). A
rollback pins the device to version ``n``'s document, as a new version. The devices a ``set``
changes are the layer's devices when it runs (the request's target should name the same
scope: it decides who may see and approve the request).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.accounts.models import Organization
from apps.changes.kinds import DevicePreview, Facts
from apps.changes.models import ChangeRequest
from apps.core.actors import Actor
from apps.core.scoping import organization_ids_under
from apps.devices.models import Device, DeviceGroup
from apps.profiles.models import ProfileVersion

from . import documents, layering, services
from .choices import Layer, SyncStatus
from .models import ConfigurationVersion, DeviceConfigurationState

PATH = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$")
MAX_ERRORS = 10
SET_KEYS = {
    "operation",
    "layer",
    "layer_id",
    "values",
    "unset",
    "variables",
    "unset_variables",
    "priority",
}
ROLLBACK_KEYS = {"operation", "device", "version"}


def _error(field: str, message: str) -> ValidationError:
    return ValidationError({field: [message]})


def _uuid(value: Any, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise _error(field, "Must be an id.") from None


def _paths(spec: dict[str, Any], field: str) -> list[str]:
    value = spec.get(field, [])
    if not isinstance(value, list) or not all(
        isinstance(path, str) and PATH.match(path) for path in value
    ):
        raise _error(field, "Must be a list of dotted paths such as network.wifi.ssid.")
    return sorted(set(value))


def _object(spec: dict[str, Any], field: str) -> dict[str, Any]:
    value = spec.get(field, {})
    if not isinstance(value, dict):
        raise _error(field, "Must be an object.")
    return value


def change_of(spec: dict[str, Any]) -> layering.LayerChange:
    """The ``LayerChange`` of a normalized ``set`` spec."""
    return layering.LayerChange(
        layer=spec["layer"],
        layer_id=uuid.UUID(spec["layer_id"]),
        values=spec["values"],
        unset=tuple(spec["unset"]),
        variables=spec["variables"],
        unset_variables=tuple(spec["unset_variables"]),
        priority=spec.get("priority"),
    )


def _within(organization: Organization) -> Any:
    return organization_ids_under([organization.path])


class ConfigurationKind:
    name = "configuration"

    # --- validate -----------------------------------------------------------------------------

    def validate(self, *, organization: Organization, spec: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise _error("spec", "Must be an object.")
        operation = spec.get("operation")
        if operation == "set":
            return self._validate_set(organization, spec)
        if operation == "rollback":
            return self._validate_rollback(organization, spec)
        raise _error("operation", "One of: set, rollback.")

    def _validate_set(self, organization: Organization, spec: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(spec) - SET_KEYS)
        if unknown:
            raise ValidationError({key: ["Unknown field."] for key in unknown})
        if spec.get("layer") not in Layer.values:
            raise _error("layer", f"One of: {', '.join(Layer.values)}.")
        normalized: dict[str, Any] = {
            "operation": "set",
            "layer": spec["layer"],
            "layer_id": str(self._layer_id(organization, spec)),
            "values": _object(spec, "values"),
            "unset": _paths(spec, "unset"),
            "variables": _object(spec, "variables"),
            "unset_variables": _paths(spec, "unset_variables"),
        }
        if "priority" in spec:
            if spec["layer"] != Layer.GROUP:
                raise _error("priority", "Only a group layer has a priority.")
            if not isinstance(spec["priority"], int) or isinstance(spec["priority"], bool):
                raise _error("priority", "Must be an integer.")
            normalized["priority"] = spec["priority"]
        if not any(normalized[key] for key in ("values", "unset", "variables", "unset_variables")):
            raise _error(
                "values", "Nothing to change: give values, unset, variables or unset_variables."
            )
        if spec["layer"] == Layer.DEVICE:
            reserved = sorted(set(normalized["variables"]) & set(layering.RESERVED_DEVICE_NAMES))
            if reserved:
                raise _error("variables", f"Reserved device names: {', '.join(reserved)}.")
        self._check_devices(change_of(normalized))
        return normalized

    def _layer_id(self, organization: Organization, spec: dict[str, Any]) -> uuid.UUID:
        layer_id = _uuid(spec.get("layer_id"), "layer_id")
        model: Any = {
            Layer.ORGANIZATION: Organization,
            Layer.GROUP: DeviceGroup,
            Layer.DEVICE: Device,
        }[spec["layer"]]
        field = "pk" if model is Organization else "organization"
        if not model.objects.filter(
            pk=layer_id, **{f"{field}__in": _within(organization)}
        ).exists():
            raise _error("layer_id", f"Unknown {spec['layer']}.")
        return layer_id

    def _check_devices(self, change: layering.LayerChange) -> None:
        """The change must leave every affected device with a valid configuration."""
        ids = list(
            layering.affected_devices(layer=change.layer, layer_id=change.layer_id).values_list(
                "pk", flat=True
            )
        )
        problems: list[str] = []
        for start in range(0, len(ids), services.BATCH):
            computed = layering.compute(ids[start : start + services.BATCH], change=change)
            for item in sorted(computed.values(), key=lambda item: item.serial):
                problems.extend(f"{item.serial}: {message}" for message in item.errors)
        if problems:
            shown = problems[:MAX_ERRORS]
            if len(problems) > MAX_ERRORS:
                shown.append(f"... and {len(problems) - MAX_ERRORS} more.")
            raise ValidationError({"values": shown})

    def _validate_rollback(
        self, organization: Organization, spec: dict[str, Any]
    ) -> dict[str, Any]:
        unknown = sorted(set(spec) - ROLLBACK_KEYS)
        if unknown:
            raise ValidationError({key: ["Unknown field."] for key in unknown})
        device_id = _uuid(spec.get("device"), "device")
        if not Device.objects.filter(pk=device_id, organization__in=_within(organization)).exists():
            raise _error("device", "Unknown device.")
        version = spec.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise _error("version", "Must be a version number.")
        if not ConfigurationVersion.objects.filter(device_id=device_id, version=version).exists():
            raise _error("version", "This device has no such version.")
        return {"operation": "rollback", "device": str(device_id), "version": version}

    # --- facts and preview ----------------------------------------------------------------------

    def facts(self, *, request: ChangeRequest) -> Facts:
        spec = request.spec
        if spec["operation"] == "rollback":
            devices = Device.objects.filter(pk=spec["device"])
            diff = self._rollback_diff(uuid.UUID(spec["device"]), spec["version"])
            keys = {change["path"] for change in diff}
        else:
            keys = {*documents.leaf_paths(spec["values"]), *spec["values"], *spec["unset"]}
            devices = layering.affected_devices(
                layer=spec["layer"], layer_id=uuid.UUID(spec["layer_id"])
            )
        versions = ProfileVersion.objects.filter(
            pk__in=devices.values("profile_version_id").distinct()
        ).values_list("profile_id", "configuration_schema")
        profiles = {profile_id for profile_id, _ in versions}
        marked = {path for _, schema in versions for path in documents.critical_paths(schema)}
        return Facts(
            configuration_keys=frozenset(keys),
            profile_ids=frozenset(profiles),
            critical_configuration_keys=frozenset(documents.touching(keys, marked)),
        )

    def _rollback_diff(self, device_id: uuid.UUID, version: int) -> list[dict[str, Any]]:
        target = ConfigurationVersion.objects.get(device_id=device_id, version=version)
        current = layering.compute([device_id]).get(device_id)
        return documents.diff(current.document if current else {}, target.document)

    def preview(
        self, *, request: ChangeRequest, device_ids: list[uuid.UUID]
    ) -> list[DevicePreview]:
        spec = request.spec
        if spec["operation"] == "rollback":
            device_ids = (
                [uuid.UUID(spec["device"])] if uuid.UUID(spec["device"]) in device_ids else []
            )
        before = layering.compute(device_ids)
        if spec["operation"] == "rollback":
            target = ConfigurationVersion.objects.get(
                device_id=spec["device"], version=spec["version"]
            )
            after = dict.fromkeys(before, target.document)
        else:
            changed = layering.compute(device_ids, change=change_of(spec))
            after = {device_id: item.document for device_id, item in changed.items()}
        previews = []
        for device_id in device_ids:
            if device_id not in before:
                continue
            diff = documents.diff(before[device_id].document, after[device_id])
            summary = f"{len(diff)} change{'s' if len(diff) != 1 else ''}" if diff else "no change"
            previews.append(
                DevicePreview(
                    device_id=device_id, serial=before[device_id].serial, summary=summary, diff=diff
                )
            )
        return previews

    # --- execution ------------------------------------------------------------------------------

    def execute(self, *, request: ChangeRequest, device_ids: list[uuid.UUID], actor: Actor) -> None:
        spec = request.spec
        if spec["operation"] == "rollback":
            device = Device.objects.get(pk=spec["device"])
            version = ConfigurationVersion.objects.get(device=device, version=spec["version"])
            services.device_pin(device=device, version=version, actor=actor)
            affected = [device.pk]
        else:
            change = change_of(spec)
            services.layer_write(change=change, organization=request.organization, actor=actor)
            found = layering.affected_devices(layer=change.layer, layer_id=change.layer_id)
            affected = list(found.values_list("pk", flat=True))
        services.recompute(device_ids=affected, actor=actor, change_request=request)
        transaction.on_commit(lambda: _complete(request.pk))

    def cancel(self, *, request: ChangeRequest, actor: Actor) -> int:
        return 0  # executing writes the layer at once: nothing is left to cancel

    def progress(self, *, request: ChangeRequest) -> dict[str, int]:
        """The devices given a version by this request, by their current sync status (a
        device later given a newer version counts as ``superseded``)."""
        versions = ConfigurationVersion.objects.filter(change_request=request)
        counts = dict.fromkeys(["total", *SyncStatus.values, "superseded"], 0)
        current = DeviceConfigurationState.objects.filter(
            device_id__in=versions.values("device_id")
        ).values_list("device_id", "desired_version", "status")
        mine = dict(versions.values_list("device_id", "version"))
        for device_id, desired, status in current:
            counts["total"] += 1
            counts[status if mine.get(device_id) == desired else "superseded"] += 1
        return counts


def _complete(request_id: uuid.UUID) -> None:
    from apps.changes.execution import change_request_completed

    change_request_completed(request_id)
