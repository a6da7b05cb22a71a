"""``devices/<id>/config/reported`` (MQTT, through ``apps.devices.uplinks``) and the same
document over HTTPS: ``{"version": n, "checksum": "<sha256>", "status": "applied"|"error",
"error": "..."}``."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from apps.devices.uplinks import Uplink, UplinkRefused

from .choices import ReportedStatus
from .reports import Report, reports_record

CHECKSUM = re.compile(r"^[0-9a-f]{64}$")
MAX_ERROR = 2000


def parse_report(device_id: uuid.UUID, document: Any, received_at: datetime) -> Report:
    """A ``Report``; UplinkRefused names the bad field."""
    if not isinstance(document, dict):
        raise UplinkRefused("invalid", "The report must be a JSON object.")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise UplinkRefused("invalid", "version: must be a non-negative integer.")
    checksum = document.get("checksum")
    if not isinstance(checksum, str) or not CHECKSUM.match(checksum):
        raise UplinkRefused("invalid", "checksum: must be 64 lowercase hexadecimal digits.")
    status = document.get("status")
    if status not in ReportedStatus.values:
        raise UplinkRefused("invalid", f"status: one of {', '.join(ReportedStatus.values)}.")
    error = document.get("error") or ""
    if not isinstance(error, str):
        raise UplinkRefused("invalid", "error: must be text.")
    return Report(
        device_id=device_id,
        version=version,
        checksum=checksum,
        status=status,
        error=error[:MAX_ERROR],
        at=received_at,
    )


def handle_reported(messages: list[Uplink]) -> list[tuple[Uplink, str, str]]:
    """The uplink handler: stores the valid reports (idempotent), refuses the others."""
    refused: list[tuple[Uplink, str, str]] = []
    reports: list[Report] = []
    for message in messages:
        try:
            reports.append(parse_report(message.device_id, message.document, message.received_at))
        except UplinkRefused as refusal:
            refused.append((message, refusal.reason, refusal.detail))
    reports_record(reports=reports)
    return refused
