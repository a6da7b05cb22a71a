"""``manage.py connectivity``: keep ``Device.connectivity`` in step with the devices' status.

Subscribes to ``$share/connectivity/devices/+/status`` on the platform listener
(``settings.MQTT_URL``), so any number of these workers split the devices between them. MQTT 5
with a persistent session and manual acknowledgements: messages are batched (by count or by
time), applied in one transaction by ``apps.devices.connectivity``, and acknowledged only once
it has committed. When a write fails the batch is not acknowledged: the worker drops the
connection and resumes its session, and the broker sends the unacknowledged messages again,
exactly as after a crash. SIGTERM or SIGINT apply what is pending, then disconnect.

The session (and so the messages it queues while the worker is down) is tied to the client id,
``fleetops-connectivity`` plus ``--suffix``: give each worker its own, and keep it across
restarts.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from apps.devices import refusals
from apps.devices.connectivity import StatusUpdate, Tally, connectivity_apply

logger = logging.getLogger("apps.devices.connectivity")

CLIENT_ID = "fleetops-connectivity"
SUBSCRIPTION = "$share/connectivity/devices/+/status"
# What the broker refused (apps/devices/refusals.py): the ACL plugin's reports, shared like the
# statuses, and the broker's log, which Mosquitto publishes to every subscriber ($SYS topics
# cannot be shared): each line is stored once whichever worker reads it.
REFUSAL_SUBSCRIPTIONS = (f"$share/connectivity/{refusals.REPORTS_TOPIC}", refusals.LOG_TOPIC)
KEEPALIVE_SECONDS = 30
MAX_BACKOFF_SECONDS = 30.0
REPORT_SECONDS = 60.0


class Command(BaseCommand):
    help = "Apply devices' online/offline status messages to the registry (runs until SIGTERM)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--suffix", default="", help="client id suffix, one per worker")
        parser.add_argument("--batch-size", type=int, default=500)
        parser.add_argument("--batch-ms", type=int, default=200, help="longest wait to batch")
        parser.add_argument(
            "--session-expiry",
            type=int,
            default=3600,
            help="seconds the broker keeps this worker's session while it is away",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.MQTT_URL:
            raise CommandError("MQTT_URL is not set.")
        suffix = options["suffix"]
        worker = Worker(
            url=settings.MQTT_URL,
            client_id=f"{CLIENT_ID}-{suffix}" if suffix else CLIENT_ID,
            batch_size=max(1, options["batch_size"]),
            batch_seconds=max(0, options["batch_ms"]) / 1000,
            session_expiry=max(0, options["session_expiry"]),
        )
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, worker.stop)
        worker.run()


class Worker:
    """One MQTT connection, driven from this thread: read, batch, apply, acknowledge."""

    def __init__(
        self,
        *,
        url: str,
        client_id: str,
        batch_size: int,
        batch_seconds: float,
        session_expiry: int,
    ) -> None:
        self.url = urlsplit(url)
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.session_expiry = session_expiry
        self.stopping = threading.Event()
        self.pending: list[tuple[mqtt.MQTTMessage, datetime]] = []
        self.first_at = 0.0
        self.tally = Tally()
        self.client = self._client(client_id)

    def _client(self, client_id: str) -> mqtt.Client:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,  # this loop reconnects, with its own backoff
            manual_ack=True,
        )
        if self.url.username:
            client.username_pw_set(unquote(self.url.username), unquote(self.url.password or ""))
        if self.url.scheme == "mqtts":
            client.tls_set()
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self.stopping.set()

    def run(self) -> None:
        unreachable = failed_batches = 0
        reported = time.monotonic()
        while not self.stopping.is_set():
            if not self.client.is_connected():
                if not self._connect():
                    unreachable += 1
                    self.stopping.wait(min(2.0**unreachable, MAX_BACKOFF_SECONDS))
                    continue
                unreachable = 0
            result = self.client.loop(timeout=self._wait())
            if result != mqtt.MQTT_ERR_SUCCESS:
                self._drop(f"connection lost ({mqtt.error_string(result)})")
                continue
            if self.pending and self._due():
                if self._flush():
                    failed_batches = 0
                else:  # the database is likely away: wait before it is sent again
                    self._drop("the batch was not applied; the broker will send it again")
                    failed_batches += 1
                    self.stopping.wait(min(2.0 ** (failed_batches - 1), MAX_BACKOFF_SECONDS))
            if time.monotonic() - reported >= REPORT_SECONDS:
                reported = time.monotonic()
                self._report()
        if self.client.is_connected():
            self._flush()
            self.client.disconnect()
        self._report()

    def _connect(self) -> bool:
        """Open the socket and send CONNECT (the CONNACK arrives through ``loop``)."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.session_expiry
        # Unacknowledged messages the broker may have in flight to us: a whole batch.
        properties.ReceiveMaximum = min(self.batch_size, 65535)
        host, port = self.url.hostname or "127.0.0.1", self.url.port or 1883
        try:
            self.client.connect(
                host, port, KEEPALIVE_SECONDS, clean_start=False, properties=properties
            )
        except OSError as error:
            logger.warning("cannot reach the broker at %s:%s: %s", host, port, error)
            return False
        # ``is_connected`` turns true with the CONNACK: wait for it here.
        deadline = time.monotonic() + KEEPALIVE_SECONDS
        while not self.client.is_connected() and time.monotonic() < deadline:
            if self.stopping.is_set():
                break
            if self.client.loop(timeout=0.5) != mqtt.MQTT_ERR_SUCCESS:
                break
        return self.client.is_connected()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, *_: Any
    ) -> None:
        if reason.is_failure:
            logger.error("the broker refused the connection: %s", reason)
            return
        logger.info("connected (session present: %s)", flags.session_present)
        # retainHandling=1: the retained statuses come only with a new subscription (a new or
        # expired session), which is exactly when this worker may have missed changes.
        options = SubscribeOptions(qos=1, retainHandling=1)  # type: ignore[no-untyped-call]
        topics = [SUBSCRIPTION, *REFUSAL_SUBSCRIPTIONS]
        client.subscribe([(topic, options) for topic in topics])

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, *_: Any
    ) -> None:
        if any(code.is_failure for code in codes):
            logger.error("the broker refused the subscription to %s: %s", SUBSCRIPTION, codes)
            return
        logger.info("subscribed to %s", SUBSCRIPTION)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        if not self.pending:
            self.first_at = time.monotonic()
        self.pending.append((message, datetime.now(tz=UTC)))

    def _wait(self) -> float:
        if not self.pending:
            return 1.0
        return max(0.0, self.first_at + self.batch_seconds - time.monotonic())

    def _due(self) -> bool:
        return len(self.pending) >= self.batch_size or self._wait() == 0.0

    def _flush(self) -> bool:
        """Apply the pending batch, then acknowledge it; False when the write failed."""
        batch, self.pending = self.pending, []
        if not batch:
            return True
        updates = [
            StatusUpdate(m.topic, bytes(m.payload), received)
            for m, received in batch
            if not refusals.is_refusal_topic(m.topic)
        ]
        refused = [
            (m.topic, bytes(m.payload)) for m, _ in batch if refusals.is_refusal_topic(m.topic)
        ]
        try:
            connectivity_apply(updates=updates, tally=self.tally)
            self.tally.refusals += refusals.record(refusals.parse(refused))
        except Exception:
            logger.exception("could not apply %s status message(s)", len(batch))
            connection.close()  # the next batch starts on a fresh connection
            return False
        for message, _ in batch:
            if message.qos > 0:
                self.client.ack(message.mid, message.qos)
        return True

    def _drop(self, why: str) -> None:
        """Forget what is pending (never acknowledged) and disconnect; the next ``run`` turn
        resumes the session and the broker sends the unacknowledged messages again."""
        logger.warning("reconnecting: %s", why)
        self.pending = []
        self.client.disconnect()

    def _report(self) -> None:
        tally = self.tally
        logger.info(
            "status messages: %s received, %s changed, %s ignored, %s malformed; %s refusal(s)",
            tally.received,
            tally.changed,
            tally.ignored,
            tally.malformed,
            tally.refusals,
        )
