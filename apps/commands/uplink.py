"""Command results over MQTT: ``devices/<id>/commands/<command id>/result``, routed here by
the ingest worker (``apps.devices.uplinks``) inside its batch transaction."""

from __future__ import annotations

from apps.core.actors import system_actor
from apps.devices.uplinks import Uplink

from .services import Report, results_record

TOPIC_FILTER = "commands/+/result"


def handle_results(uplinks: list[Uplink]) -> list[tuple[Uplink, str, str]]:
    """Apply the batch's results; the refused ones become dead letters."""
    reports = [
        Report(
            device_id=uplink.device_id,
            command_id=uplink.subtopic.split("/")[1],
            document=uplink.document,
            at=uplink.received_at,
        )
        for uplink in uplinks
    ]
    refused = results_record(reports=reports, actor=system_actor("ingest", source="device"))
    return [(uplinks[refusal.index], refusal.reason, refusal.detail) for refusal in refused]
