"""What the HTTPS device API reads and writes for a device: uploads queued for the telemetry
pipeline, and the configuration document a device pulls by checksum.

Uploads carry the MQTT payloads unchanged (one message, or a list of them). Each needs integer
``boot`` and ``seq`` (the de-duplication key): a resent message is accepted and stored once
(``INSERT ... ON CONFLICT DO NOTHING`` on the unique (device, kind, boot, seq)). A heartbeat
also moves the device's ``last_seen_at`` (one UPDATE)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from . import provisioning
from .models import Device, UplinkKind, UplinkMessage

MAX_BATCH = 100
MAX_COUNTER = 2**63 - 1


def _counter(message: dict[str, Any], name: str, prefix: str) -> dict[str, str]:
    value = message.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNTER:
        return {f"{prefix}{name}": "Required: a non-negative integer."}
    return {}


def parse_uploads(body: Any) -> list[dict[str, Any]]:
    """The messages of an upload body (an object, or a list of up to ``MAX_BATCH``), each with
    integer ``boot`` and ``seq``; ValidationError naming the field otherwise."""
    single = isinstance(body, dict)
    messages = [body] if single else body
    if not isinstance(messages, list) or not messages:
        raise ValidationError({"non_field_errors": "Send a JSON object, or a list of them."})
    if len(messages) > MAX_BATCH:
        raise ValidationError({"non_field_errors": f"At most {MAX_BATCH} messages at once."})
    errors: dict[str, str] = {}
    for index, message in enumerate(messages):
        prefix = "" if single else f"{index}."
        if not isinstance(message, dict):
            errors[prefix.rstrip(".") or "non_field_errors"] = "Must be a JSON object."
            continue
        errors |= _counter(message, "boot", prefix) | _counter(message, "seq", prefix)
    if errors:
        raise ValidationError(errors)
    return messages


@transaction.atomic
def uploads_accept(*, device: Device, kind: str, messages: list[dict[str, Any]]) -> int:
    """Queue ``messages`` of ``kind`` for the pipeline. Returns how many were accepted (all of
    them: duplicates of stored messages are acknowledged, not stored again)."""
    if kind not in UplinkKind.values:
        raise ValidationError({"kind": f"Unknown upload kind {kind}."})
    now = timezone.now()
    UplinkMessage.objects.bulk_create(
        [
            UplinkMessage(
                device=device,
                kind=kind,
                boot=message["boot"],
                seq=message["seq"],
                payload=message,
                received_at=now,
            )
            for message in messages
        ],
        ignore_conflicts=True,
    )
    if kind == UplinkKind.HEARTBEAT:
        Device.objects.filter(pk=device.pk).update(last_seen_at=now)
    return len(messages)


def configuration_document(device: Device) -> dict[str, Any]:
    """The device's provisioned configuration (what activation recorded; for a device not
    activated yet, what it would get), with its ``checksum``: a SHA-256 of the canonical JSON,
    which changes exactly when the content does."""
    applied = device.provisioning or provisioning.resolve(
        device.organization, device.profile_version
    )
    document = {
        "configuration": applied.get("configuration", {}),
        "heartbeat": applied.get("heartbeat", {}),
        "routing_labels": applied.get("routing_labels", []),
        "software": applied.get("software", {}),
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {"checksum": hashlib.sha256(canonical.encode()).hexdigest(), **document}
