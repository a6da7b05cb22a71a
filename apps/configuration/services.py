"""Writes of configuration management: layers, effective versions, reports, drift.

Layers change only by executing a ``configuration`` change request (``kind.py`` calls
``layer_write`` then ``recompute`` in the change request's transaction). ``recompute`` is
set-based: a batch of devices costs a handful of reads, one ``bulk_create`` of versions, one
upsert of states and one ``enqueue`` of retained ``config/desired`` downlinks, whatever its size.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.accounts.models import Organization
from apps.changes.models import ChangeRequest
from apps.core import audit
from apps.core.actors import Actor
from apps.devices import downlinks
from apps.devices.models import Device, DeviceGroup

from . import layering
from .choices import Layer, ReportedStatus, SyncStatus
from .models import (
    ConfigurationVersion,
    DeviceConfiguration,
    DeviceConfigurationState,
    GroupConfiguration,
    OrganizationConfiguration,
)

BATCH = 1000
DESIRED_TOPIC = "config/desired"
REF_TYPE = "configuration"


@dataclass
class Recomputed:
    """What a recompute did: devices given a new version, unchanged, and refused (their
    effective configuration is invalid: ``{serial: [messages]}``)."""

    changed: int = 0
    unchanged: int = 0
    refused: dict[str, list[str]] = field(default_factory=dict)


def drift_tolerance() -> timedelta:
    return timedelta(seconds=getattr(settings, "CONFIGURATION_DRIFT_TOLERANCE_SECONDS", 600))


# --- layers ------------------------------------------------------------------------------------


def layer_write(
    *, change: layering.LayerChange, organization: Organization, actor: Actor
) -> OrganizationConfiguration | GroupConfiguration | DeviceConfiguration:
    """Apply ``change`` to its layer (created when missing), audited, in the caller's
    transaction. A device-layer change also lifts a rollback pin."""
    layer = _layer_for_update(change, organization)
    values_field = "overrides" if change.layer == Layer.DEVICE else "values"
    before = {"values": getattr(layer, values_field), "variables": layer.variables}
    values, variables = change.apply(getattr(layer, values_field), layer.variables)
    setattr(layer, values_field, values)
    layer.variables = variables
    if isinstance(layer, GroupConfiguration) and change.priority is not None:
        layer.priority = change.priority
    if isinstance(layer, DeviceConfiguration):
        layer.pinned_version = None
        layer.pinned_document = None
    layer.save()
    audit.record(
        actor=actor,
        action="configuration.layer_changed",
        obj=layer,
        changes=audit.diff(before, {"values": values, "variables": variables}),
    )
    return layer


def _layer_for_update(
    change: layering.LayerChange, organization: Organization
) -> OrganizationConfiguration | GroupConfiguration | DeviceConfiguration:
    if change.layer == Layer.ORGANIZATION:
        layer, _ = OrganizationConfiguration.objects.select_for_update().get_or_create(
            organization_id=change.layer_id
        )
        return layer
    if change.layer == Layer.GROUP:
        group = DeviceGroup.objects.get(pk=change.layer_id)
        found, _ = GroupConfiguration.objects.select_for_update().get_or_create(
            group=group, defaults={"organization_id": group.organization_id}
        )
        return found
    device = Device.objects.get(pk=change.layer_id)
    own, _ = DeviceConfiguration.objects.select_for_update().get_or_create(
        device=device, defaults={"organization_id": device.organization_id}
    )
    return own


def device_pin(
    *, device: Device, version: ConfigurationVersion, actor: Actor
) -> DeviceConfiguration:
    """Pin ``device`` to an earlier version's document (a rollback), audited."""
    own, _ = DeviceConfiguration.objects.select_for_update().get_or_create(
        device=device, defaults={"organization_id": device.organization_id}
    )
    own.pinned_version = version.version
    own.pinned_document = version.document
    own.save(update_fields=["pinned_version", "pinned_document", "updated_at"])
    audit.record(
        actor=actor,
        action="configuration.rolled_back",
        obj=device,
        changes={"version": version.version, "checksum": version.checksum},
    )
    return own


# --- effective versions ------------------------------------------------------------------------


def recompute(
    *,
    device_ids: Iterable[uuid.UUID],
    actor: Actor,
    change_request: ChangeRequest | None = None,
) -> Recomputed:
    """Give every device whose effective configuration changed a new version, its desired
    state and a retained ``config/desired`` message, in the caller's transaction.

    Each batch first locks the devices' state rows (created when missing), in id order, and
    only then reads the layers: two recomputes of one device (two layers changed at once) run
    one after the other, and the second sees the first's layer."""
    result = Recomputed()
    ids = sorted(set(device_ids))
    for start in range(0, len(ids), BATCH):
        _recompute_batch(ids[start : start + BATCH], actor, change_request, result)
    return result


LOCK_SQL = """
INSERT INTO configuration_deviceconfigurationstate AS s
    (device_id, organization_id, desired_version, desired_checksum, desired_at,
     reported_checksum, reported_status, reported_error, status)
SELECT d.id, d.organization_id, 0, '', now(), '', '', '', %(pending)s
FROM devices_device d WHERE d.id = ANY(%(ids)s::uuid[]) ORDER BY d.id
ON CONFLICT (device_id) DO NOTHING
"""


def _lock_states(ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Lock (creating placeholders, version 0) the state rows of ``ids``; their checksums."""
    with connection.cursor() as cursor:
        cursor.execute(LOCK_SQL, {"ids": [str(i) for i in ids], "pending": SyncStatus.PENDING})
    locked = (
        DeviceConfigurationState.objects.select_for_update()
        .filter(device_id__in=ids)
        .order_by("device_id")
        .values_list("device_id", "desired_checksum")
    )
    return dict(locked)


def _recompute_batch(
    ids: list[uuid.UUID], actor: Actor, change_request: ChangeRequest | None, result: Recomputed
) -> None:
    current = _lock_states(ids)
    effective = layering.compute(ids)
    latest = _latest_versions(list(effective))
    fresh: list[ConfigurationVersion] = []
    for device_id, item in effective.items():
        if item.errors:
            result.refused[item.serial] = item.errors
        elif current.get(device_id) == item.checksum:
            result.unchanged += 1
        else:
            fresh.append(_version(item, latest.get(device_id, 0) + 1, actor, change_request))
    # a device that never had a valid configuration keeps no placeholder
    DeviceConfigurationState.objects.filter(device_id__in=ids, desired_version=0).exclude(
        device_id__in=[version.device_id for version in fresh]
    ).delete()
    if fresh:
        ConfigurationVersion.objects.bulk_create(fresh)
        _upsert_desired(fresh)
        downlinks.enqueue([_desired_message(version) for version in fresh])
        result.changed += len(fresh)


def _latest_versions(device_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The highest version number of each device (history may be ahead of a lost state)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT device_id, max(version) FROM configuration_configurationversion "
            "WHERE device_id = ANY(%s::uuid[]) GROUP BY device_id",
            [[str(device_id) for device_id in device_ids]],
        )
        return {uuid.UUID(str(device_id)): number for device_id, number in cursor.fetchall()}


def _version(
    item: layering.Effective,
    number: int,
    actor: Actor,
    change_request: ChangeRequest | None,
) -> ConfigurationVersion:
    return ConfigurationVersion(
        organization_id=item.organization_id,
        device_id=item.device_id,
        version=number,
        checksum=item.checksum,
        document=item.document,
        change_request=change_request,
        created_by_id=actor.user_id,
        created_by_label=actor.label[:200],
    )


def _upsert_desired(versions: Sequence[ConfigurationVersion]) -> None:
    """One statement: the new desired version of each device, now pending (unless the device
    already reported exactly that document)."""
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO configuration_deviceconfigurationstate AS s
                (device_id, organization_id, desired_version, desired_checksum, desired_at,
                 reported_checksum, reported_status, reported_error, status, out_of_sync_since)
            SELECT v.device_id, v.organization_id, v.version, v.checksum, %(now)s,
                   '', '', '', %(pending)s, %(now)s
            FROM unnest(%(devices)s::uuid[], %(organizations)s::uuid[], %(versions)s::int[],
                        %(checksums)s::text[]) AS v(device_id, organization_id, version, checksum)
            ON CONFLICT (device_id) DO UPDATE SET
                organization_id = EXCLUDED.organization_id,
                desired_version = EXCLUDED.desired_version,
                desired_checksum = EXCLUDED.desired_checksum,
                desired_at = EXCLUDED.desired_at,
                status = CASE WHEN s.reported_status = %(applied)s
                                   AND s.reported_checksum = EXCLUDED.desired_checksum
                              THEN %(in_sync)s ELSE %(pending)s END,
                out_of_sync_since = CASE WHEN s.reported_status = %(applied)s
                                   AND s.reported_checksum = EXCLUDED.desired_checksum
                              THEN NULL ELSE coalesce(s.out_of_sync_since, %(now)s) END
            """,
            {
                "now": now,
                "pending": SyncStatus.PENDING,
                "in_sync": SyncStatus.IN_SYNC,
                "applied": ReportedStatus.APPLIED,
                "devices": [str(v.device_id) for v in versions],
                "organizations": [str(v.organization_id) for v in versions],
                "versions": [v.version for v in versions],
                "checksums": [v.checksum for v in versions],
            },
        )


def desired_payload(version: int, checksum: str, document: dict[str, Any]) -> bytes:
    """The ``config/desired`` document (also the body of the HTTPS pull)."""
    return orjson.dumps({"version": version, "checksum": checksum, "configuration": document})


def _desired_message(version: ConfigurationVersion) -> downlinks.Outgoing:
    return downlinks.Outgoing(
        device_id=version.device_id,
        organization_id=version.organization_id,
        topic=DESIRED_TOPIC,
        payload=desired_payload(version.version, version.checksum, version.document),
        retain=True,
        ref_type=REF_TYPE,
        ref_id=f"{version.device_id}:{version.version}",
        supersede=True,
    )


def ensure_desired(*, device: Device, actor: Actor) -> DeviceConfigurationState | None:
    """The device's desired state, computed on first use (a device that no change touched yet
    still has an effective configuration); None when it is invalid."""
    state = DeviceConfigurationState.objects.filter(device_id=device.pk).first()
    if state is not None:
        return state
    with transaction.atomic():
        recompute(device_ids=[device.pk], actor=actor)
    return DeviceConfigurationState.objects.filter(device_id=device.pk).first()
