"""What the broker refused, counted and audited.

Two sources, both read by the connectivity worker (``manage.py connectivity``) on the platform
listener, and both acknowledged only after this module committed:

- the device listeners' ACL plugin (``deploy/mosquitto/plugin/fleetops_device_acl.c``) reports
  each refused publish, subscription, delivery and oversized message on ``REPORTS_TOPIC`` as
  JSON, aggregated per second per (device, topic, reason), each report with a unique id;
- the broker's own log, which Mosquitto also publishes on ``$SYS/broker/log/<level>``: a failed
  TLS handshake (unknown CA, revoked or missing certificate) and wrong credentials. Mosquitto
  names no device there: only the address of a failed handshake is known. A log line's id is a
  hash of its text (timestamped to the second) and of its rank among identical lines of the
  same batch, so a line delivered again, or to a second worker, is stored once.

``record`` stores each report once (``BrokerRefusal.report_id`` is unique) and writes one audit
row per stored report, in one transaction, with a constant number of statements per batch.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from apps.core.ids import uuid7
from apps.core.models import AuditLog

from .broker import REFUSALS_TOPIC
from .models_refusals import RefusalReason

REPORTS_TOPIC = REFUSALS_TOPIC
LOG_TOPIC = "$SYS/broker/log/+"
ACTION = "broker.refused"

PLUGIN_REASONS = {
    ("write", "acl"): RefusalReason.PUBLISH,
    ("subscribe", "acl"): RefusalReason.SUBSCRIBE,
    ("read", "acl"): RefusalReason.READ,
    ("write", "oversized"): RefusalReason.OVERSIZED,
}
# Mosquitto 2.0's wording. "unexpected eof" is a client hanging up mid-handshake (a port check,
# a device giving up), not a refusal.
HANDSHAKE = re.compile(r"Client connection from (?P<address>\S+) failed: (?P<detail>.+?)\.?$")
OPENSSL = re.compile(r"OpenSSL Error\[(?P<index>\d+)\]: (?:.*::)?(?P<detail>[^:]+?)\.?$")
NEW_CONNECTION = re.compile(r"New connection from (?P<address>.+):\d+ on port \d+\.?$")
CREDENTIALS = re.compile(r"Client (?P<client>\S+) disconnected, not authori[sz]ed\.?$")
BENIGN = ("unexpected eof",)

INSERT_SQL = """
WITH incoming AS (
    SELECT * FROM unnest(
        %(ids)s::uuid[], %(report_ids)s::text[], %(reasons)s::text[], %(counts)s::int[],
        %(devices)s::uuid[], %(usernames)s::text[], %(addresses)s::text[], %(topics)s::text[],
        %(details)s::text[]
    ) AS i (id, report_id, reason, count, device_id, username, address, topic, detail)
)
INSERT INTO devices_brokerrefusal
    (id, report_id, received_at, organization_id, device_id, reason, count, username, address,
     topic, detail)
SELECT i.id, i.report_id, %(now)s, d.organization_id, d.id, i.reason, i.count, i.username,
       i.address, i.topic, i.detail
FROM incoming i LEFT JOIN devices_device d ON d.id = i.device_id
ON CONFLICT (report_id) DO NOTHING
RETURNING id, organization_id, device_id, reason, count, username, address, topic, detail
"""


@dataclass(frozen=True)
class Refusal:
    report_id: str
    reason: str
    count: int = 1
    username: str = ""
    address: str = ""
    topic: str = ""
    detail: str = ""

    @property
    def device_id(self) -> uuid.UUID | None:
        try:
            device_id = uuid.UUID(self.username)
        except ValueError:
            return None
        return device_id if str(device_id) == self.username else None


def is_refusal_topic(topic: str) -> bool:
    return topic == REPORTS_TOPIC or topic.startswith("$SYS/broker/log/")


def parse(messages: list[tuple[str, bytes]]) -> list[Refusal]:
    """The refusals among ``(topic, payload)`` messages of either source; anything else (other
    log lines, malformed reports) is skipped."""
    found: list[Refusal] = []
    lines = LogLines()
    for topic, payload in messages:
        if topic == REPORTS_TOPIC:
            if (report := _plugin_report(payload)) is not None:
                found.append(report)
        else:
            lines.read(payload.decode("utf-8", "replace"), found)
    return found


def _plugin_report(payload: bytes) -> Refusal | None:
    try:
        document = json.loads(payload)
        reason = PLUGIN_REASONS.get((document["access"], document["reason"]))
        if document["reason"] == "overflow":
            reason = RefusalReason.OVERFLOW
        report_id = f"plugin:{document['id']}"
        count = int(document["count"])
    except (ValueError, KeyError, TypeError):
        return None
    if reason is None:
        return None
    size = int(document.get("bytes") or 0)
    return Refusal(
        report_id=report_id[:80],
        reason=reason,
        count=max(count, 1),
        username=str(document.get("username", ""))[:200],
        address=str(document.get("address", ""))[:64],
        topic=str(document.get("topic", ""))[:300],
        detail=f"{size} bytes" if reason == RefusalReason.OVERSIZED else "",
    )


class LogLines:
    """Mosquitto 2.0's log, a line at a time. A refused handshake logs ``OpenSSL Error[0]: ...``
    (more errors of the same failure follow as ``[1]``, ``[2]``), sometimes followed by
    ``Client connection from <address> failed: <same detail>.``; it is one refusal. Mosquitto
    names no address with the OpenSSL line: the latest ``New connection from`` before it is
    used, which is the right one unless handshakes interleave (best effort)."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.address = ""
        self.last: Refusal | None = None

    def read(self, line: str, found: list[Refusal]) -> None:
        self.seen[line] += 1
        text = line.partition(": ")[2] if line[:1].isdigit() else line
        report_id = f"log:{hashlib.sha256(line.encode()).hexdigest()[:40]}#{self.seen[line]}"
        last, self.last = self.last, None
        if match := NEW_CONNECTION.search(text):
            self.address = match["address"]
        elif match := OPENSSL.search(text):
            if match["index"] != "0":  # more of the same failure
                self.last = last
                return
            self.last = Refusal(
                report_id, RefusalReason.TLS, address=self.address, detail=match["detail"]
            )
            found.append(self.last)
        elif match := HANDSHAKE.search(text):
            detail = match["detail"].rsplit("::", 1)[-1][:300]
            if any(benign in detail for benign in BENIGN):
                return
            if last is not None and last.detail == detail:  # the same failure, now with its address
                found[found.index(last)] = replace(last, address=match["address"][:64])
                return
            found.append(
                Refusal(report_id, RefusalReason.TLS, address=match["address"][:64], detail=detail)
            )
        elif match := CREDENTIALS.search(text):
            client = match["client"]
            username = "" if client == "<unknown>" else client[:200]
            found.append(Refusal(report_id, RefusalReason.CREDENTIALS, username=username))


@transaction.atomic
def record(refusals: list[Refusal]) -> int:
    """Store the refusals not stored before and audit each; returns how many were new."""
    if not refusals:
        return 0
    now = timezone.now()
    columns: dict[str, Any] = {
        "ids": [uuid7() for _ in refusals],
        "report_ids": [r.report_id for r in refusals],
        "reasons": [str(r.reason) for r in refusals],
        "counts": [r.count for r in refusals],
        "devices": [r.device_id for r in refusals],
        "usernames": [r.username for r in refusals],
        "addresses": [r.address for r in refusals],
        "topics": [r.topic for r in refusals],
        "details": [r.detail for r in refusals],
        "now": now,
    }
    with connection.cursor() as cursor:
        cursor.execute(INSERT_SQL, columns)
        stored = cursor.fetchall()
    AuditLog.objects.bulk_create([_audit(row, now) for row in stored])
    return len(stored)


def _audit(row: tuple[Any, ...], now: Any) -> AuditLog:
    _id, organization_id, device_id, reason, count, username, address, topic, detail = row
    label = username or address or "unknown client"
    return AuditLog(
        created_at=now,
        organization_id=organization_id,
        actor_kind=AuditLog.ActorKind.DEVICE if device_id else AuditLog.ActorKind.SYSTEM,
        actor_device_id=device_id,
        actor_label=f"device {label}" if device_id else f"broker client {label}"[:255],
        source=AuditLog.Source.DEVICE if device_id else AuditLog.Source.SYSTEM,
        action=ACTION,
        object_type="devices.device" if device_id else "",
        object_id=str(device_id) if device_id else "",
        object_repr=str(RefusalReason(reason).label)[:255],
        changes={
            "reason": reason,
            "count": count,
            "topic": topic,
            "address": address,
            "username": username,
            "detail": detail,
        },
    )
