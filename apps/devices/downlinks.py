"""Messages to devices over MQTT through an outbox: nothing sent that was not committed,
nothing committed that is not sent.

A feature that tells a device something (a command, its desired configuration, an update
offer) calls ``enqueue`` in the transaction of the change: one ``Downlink`` row per message.
After commit the Celery task ``devices.publish_downlinks`` (and beat, every few seconds, in case
a wake-up was lost) runs ``publish_pending``: it claims pending rows (``FOR UPDATE SKIP
LOCKED``, so several publishers never take the same row), publishes them at QoS 1 over one
MQTT connection on the platform account, waits for the broker's PUBACKs and marks exactly the
acknowledged rows published, calling the senders' ``on_published`` callbacks in that same
transaction. A publisher that dies after publishing and before marking leaves the rows to be
claimed again when their claim lapses: at least once, so receivers de-duplicate (commands carry
their id, configuration its version).

Devices keep persistent sessions, so the broker queues what an offline device misses. A message
with ``expires_at`` is published with an MQTT 5 message expiry interval: the broker drops it
from an offline device's queue once it has expired, and the publisher never publishes it late.
``supersede=True`` (the retained desired configuration) drops the device's older unpublished
messages on the same topic: only the newest matters.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .models_downlink import Downlink, DownlinkState

__all__ = ["Outgoing", "enqueue", "on_published", "publish_pending"]

logger = logging.getLogger("apps.devices.downlinks")

CLAIM_SECONDS = 60  # a claimed row is retried by another publisher after this
ACK_TIMEOUT_SECONDS = 30.0

_CALLBACKS: dict[str, list[Callable[[list[str]], None]]] = {}


@dataclass(frozen=True)
class Outgoing:
    """One message for a device. ``topic`` is relative to ``devices/<id>/``."""

    device_id: uuid.UUID
    organization_id: uuid.UUID
    topic: str
    payload: bytes
    retain: bool = False
    expires_at: datetime | None = None
    ref_type: str = ""
    ref_id: str = ""
    supersede: bool = False


def on_published(ref_type: str, callback: Callable[[list[str]], None]) -> None:
    """Call ``callback(ref_ids)`` in the transaction that marks messages of ``ref_type``
    published (register once, from an ``AppConfig.ready``)."""
    _CALLBACKS.setdefault(ref_type, []).append(callback)


def enqueue(messages: Sequence[Outgoing]) -> int:
    """Queue ``messages`` in the caller's transaction (one statement, plus one per topic that
    supersedes); the publisher is woken after commit. Returns how many were queued."""
    if not messages:
        return 0
    now = timezone.now()
    superseding = {(m.device_id, _topic(m)) for m in messages if m.supersede}
    if superseding:
        _supersede(superseding)
    Downlink.objects.bulk_create(
        [
            Downlink(
                organization_id=m.organization_id,
                device_id=m.device_id,
                topic=_topic(m),
                payload=m.payload,
                retain=m.retain,
                expires_at=m.expires_at,
                ref_type=m.ref_type,
                ref_id=m.ref_id,
                created_at=now,
            )
            for m in _newest_per_topic(messages)
        ],
        batch_size=5000,
    )
    transaction.on_commit(_wake)
    return len(messages)


def _topic(message: Outgoing) -> str:
    return f"devices/{message.device_id}/{message.topic}"


def _newest_per_topic(messages: Sequence[Outgoing]) -> list[Outgoing]:
    """Within one call, a superseding message also replaces an earlier one of the same topic."""
    last = {(m.device_id, _topic(m)): index for index, m in enumerate(messages) if m.supersede}
    return [
        m
        for index, m in enumerate(messages)
        if not m.supersede or last[(m.device_id, _topic(m))] == index
    ]


def _supersede(pairs: set[tuple[uuid.UUID, str]]) -> None:
    devices = [str(device) for device, _ in pairs]
    topics = [topic for _, topic in pairs]
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE devices_downlink d SET state = %s FROM unnest(%s::uuid[], %s::text[]) "
            "AS p(device_id, topic) WHERE d.device_id = p.device_id AND d.topic = p.topic "
            "AND d.state = %s",
            [DownlinkState.SUPERSEDED, devices, topics, DownlinkState.PENDING],
        )


def _wake() -> None:
    from .tasks import publish_downlinks

    try:
        publish_downlinks.apply_async(expires=60)
    except Exception:  # beat picks the rows up anyway: a lost wake-up only delays them
        logger.warning("could not wake the downlink publisher", exc_info=True)


# --- the publisher ---------------------------------------------------------------------------

CLAIM_SQL = """
UPDATE devices_downlink SET claimed_until = now() + make_interval(secs => %(claim)s),
    attempts = attempts + 1
WHERE id IN (
    SELECT id FROM devices_downlink
    WHERE state = 'pending' AND (claimed_until IS NULL OR claimed_until < now())
    ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
)
RETURNING id, topic, payload, retain, expires_at, ref_type, ref_id
"""


def publish_pending(*, limit: int = 5000) -> int:
    """Publish up to ``limit`` pending messages; returns how many the broker acknowledged."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(CLAIM_SQL, {"claim": CLAIM_SECONDS, "limit": limit})
        claimed = sorted(cursor.fetchall())
    if not claimed:
        return 0
    now = timezone.now()
    live = [row for row in claimed if row[4] is None or row[4] > now]
    expired = [row[0] for row in claimed if row[4] is not None and row[4] <= now]
    acknowledged, error = _publish(live, now) if live else ([], "")
    _record(claimed, acknowledged, expired, error)
    return len(acknowledged)


def _record(
    claimed: list[tuple[Any, ...]], acknowledged: list[int], expired: list[int], error: str
) -> None:
    done = set(acknowledged)
    refs: dict[str, list[str]] = {}
    for row in claimed:
        if row[0] in done and row[5]:
            refs.setdefault(row[5], []).append(row[6])
    failed = [row[0] for row in claimed if row[0] not in done and row[0] not in set(expired)]
    with transaction.atomic():
        now = timezone.now()
        Downlink.objects.filter(id__in=acknowledged, state=DownlinkState.PENDING).update(
            state=DownlinkState.PUBLISHED, published_at=now, claimed_until=None
        )
        Downlink.objects.filter(id__in=expired, state=DownlinkState.PENDING).update(
            state=DownlinkState.EXPIRED, claimed_until=None
        )
        if failed:  # retried once the claim lapses
            Downlink.objects.filter(id__in=failed).update(last_error=error[:2000])
        for ref_type, ref_ids in refs.items():
            for callback in _CALLBACKS.get(ref_type, []):
                callback(ref_ids)


def _publish(rows: list[tuple[Any, ...]], now: datetime) -> tuple[list[int], str]:
    """Publish ``rows`` over one connection; the ids the broker acknowledged, and the error
    that stopped the others (empty when none did)."""
    client = _client()
    acknowledged: list[int] = []
    done = threading.Condition()
    by_mid: dict[int, int] = {}

    def published(client: mqtt.Client, userdata: Any, mid: int, *_: Any) -> None:
        with done:
            if mid in by_mid:
                acknowledged.append(by_mid.pop(mid))
            done.notify_all()

    client.on_publish = published
    try:
        _connect(client)
        for row_id, topic, payload, retain, expires_at, _, _ in rows:
            info = client.publish(
                topic, bytes(payload), qos=1, retain=retain, properties=_expiry(expires_at, now)
            )
            with done:
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    raise ConnectionError(mqtt.error_string(info.rc))
                if info.is_published():
                    acknowledged.append(row_id)
                else:
                    by_mid[info.mid] = row_id
        with done:
            done.wait_for(lambda: not by_mid, timeout=ACK_TIMEOUT_SECONDS)
            error = f"{len(by_mid)} message(s) not acknowledged in time" if by_mid else ""
    except (OSError, ConnectionError) as failure:
        error = f"publishing failed: {failure}"
        logger.warning("downlinks: %s", error)
    finally:
        client.disconnect()
        client.loop_stop()
    with done:
        return list(acknowledged), error


def _client() -> mqtt.Client:
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"fleetops-downlinks-{uuid.uuid4().hex[:12]}",
        protocol=mqtt.MQTTv5,
    )
    url = urlsplit(settings.MQTT_URL)
    if url.username:
        client.username_pw_set(unquote(url.username), unquote(url.password or ""))
    if url.scheme == "mqtts":
        client.tls_set()
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    return client


def _connect(client: mqtt.Client) -> None:
    url = urlsplit(settings.MQTT_URL)
    connected = threading.Event()
    refused: list[str] = []

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, *_: Any) -> None:
        if reason.is_failure:
            refused.append(str(reason))
        connected.set()

    client.on_connect = on_connect
    client.connect(url.hostname or "127.0.0.1", url.port or 1883, keepalive=30)
    client.loop_start()
    if not connected.wait(10) or refused:
        raise ConnectionError(f"could not connect to the broker {refused or ''}".strip())


def _expiry(expires_at: datetime | None, now: datetime) -> Properties | None:
    if expires_at is None:
        return None
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.MessageExpiryInterval = max(1, int((expires_at - now) / timedelta(seconds=1)))
    return properties
