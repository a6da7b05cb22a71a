"""The ingest worker (``manage.py ingest``): devices' uplink messages from MQTT into the pipeline.

One process, two threads. paho-mqtt's network thread keeps the connection (keepalive,
reconnects with backoff) and appends every message it receives to an in-memory inbox; the main
thread takes batches from the inbox (``--batch-size`` messages, or whatever arrived within
``--max-wait-ms`` of the first one), runs ``apps.telemetry.pipeline.process_batch`` (one
transaction) and, only once it has committed, acknowledges the batch's messages (manual
acknowledgements). Reading the next batch from the socket overlaps with writing this one.

Nothing is lost and nothing is stored twice, by construction:

- The session is persistent (MQTT 3.1.1 ``clean_session=False``; MQTT 5 ``clean_start=False``
  with a long session expiry) under a client id that stays the same across restarts
  (``fleetops-ingest-<name>``), on shared subscriptions
  (``$share/ingest/devices/+/telemetry|heartbeat|events``, QoS 1): while a worker is down, or
  after it was killed, the broker keeps its share of the messages, acknowledged or not, and
  delivers them again when it is back.
- A database error (or any error in the pipeline) acknowledges nothing: the worker closes its
  database connection, waits (exponential backoff, up to 30 s) and retries the same batch,
  keeping the MQTT connection alive meanwhile.
- A message redelivered after it was stored (the worker died between the commit and the
  acknowledgement) is dropped by the pipeline's de-duplication on (device, kind, boot, seq).
- Acknowledgements belong to one connection: a message received before the connection dropped
  is never acknowledged on the next one (its packet id may name another message there); the
  broker sends it again and de-duplication absorbs it.

MQTT 3.1.1 by default: paho-mqtt decodes the MQTT 5 properties of every message in Python,
which halves what one process can read (``bench/ingest.py``: a bare subscriber drains about
twice as many messages per second over 3.1.1 as over 5). Shared subscriptions and persistent
sessions behave the same over both with Mosquitto, EMQX, HiveMQ and VerneMQ; ``--protocol 5``
adds a session expiry and a receive maximum of two batches.

HTTPS uploads queued by the device API (``UplinkMessage``) go through the same pipeline:
``drain_uplinks()`` runs when the worker is idle, and at least every second.

SIGTERM or SIGINT: the batch in progress is committed and acknowledged, what has already
arrived is committed and acknowledged too, then the worker disconnects (its session stays).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from django.db import connection
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from .ingest_stats import WorkerStats
from .types import BatchResult, Incoming

__all__ = ["CLIENT_ID_PREFIX", "SUBSCRIPTIONS", "IngestWorker", "WorkerConfig"]

logger = logging.getLogger("apps.telemetry.ingest")

CLIENT_ID_PREFIX = "fleetops-ingest-"
SUBSCRIPTIONS = tuple(
    f"$share/ingest/devices/+/{kind}" for kind in ("telemetry", "heartbeat", "events")
)
KEEPALIVE_SECONDS = 30
MAX_BACKOFF_SECONDS = 30.0
TICK_SECONDS = 0.05  # how often an idle main thread looks at the inbox, the clock and signals
UPLINK_IDLE_SECONDS = 0.25  # drain HTTPS uploads this often when MQTT is quiet...
UPLINK_BUSY_SECONDS = 1.0  # ...and at least this often when it is not
REPORT_SECONDS = 60.0
RETIRE_QUIET_SECONDS = 3.0  # --retire: stop after this long without a message

# (message, unix time it arrived, connection generation it arrived on)
Received = tuple[mqtt.MQTTMessage, float, int]


@dataclass(frozen=True)
class WorkerConfig:
    url: str  # MQTT_URL: the platform account on the platform listener
    name: str  # stable per worker: the MQTT session is tied to it
    batch_size: int = 5000
    max_wait: float = 0.2
    session_expiry: int = 30 * 24 * 3600  # as long as the broker keeps a session at all
    uplinks: bool = True
    protocol: str = "3.1.1"  # or "5" (see the command's --protocol)
    retire: bool = False  # leave the shared subscription, store what is queued, stop

    @property
    def client_id(self) -> str:
        return CLIENT_ID_PREFIX + self.name

    @property
    def receive_maximum(self) -> int:
        """Unacknowledged messages the broker may have in flight to us: two batches, so that
        the next batch arrives while this one is written."""
        return min(2 * self.batch_size, 65535)


def _pipeline() -> tuple[Callable[[list[Incoming]], BatchResult], Callable[..., int]]:
    from .pipeline import drain_uplinks, process_batch

    return process_batch, drain_uplinks


class IngestWorker:
    """One MQTT connection (paho's thread) feeding one writer (the calling thread)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.stats = WorkerStats(config.name)
        self.stopping = threading.Event()
        self.ready = threading.Event()  # a full batch is waiting
        self.inbox: deque[Received] = deque()
        self.generation = 0  # bumped by every disconnect, under ack_lock
        self.ack_lock = threading.Lock()
        self.process_batch, self.drain_uplinks = _pipeline()
        self.uplinks_at = 0.0  # last drain of the HTTPS uploads (monotonic)
        self.uplinks_held_until = 0.0
        self.uplinks_more = False
        self.uplink_failures = 0
        self.reported_at = time.monotonic()
        self.last_message_at = 0.0
        self.unsubscribed_at: float | None = None  # --retire: when the broker confirmed
        self.client = self._client()

    # --- the MQTT side (paho's network thread) -------------------------------------------------

    def _client(self) -> mqtt.Client:
        url = urlsplit(self.config.url)
        v5 = self.config.protocol == "5"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.config.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,  # 3.1.1: a persistent session
            manual_ack=True,
        )
        if url.username:
            client.username_pw_set(unquote(url.username), unquote(url.password or ""))
        if url.scheme == "mqtts":
            client.tls_set()
        client.reconnect_delay_set(1, int(MAX_BACKOFF_SECONDS))
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self.config.session_expiry
        properties.ReceiveMaximum = self.config.receive_maximum
        return properties

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, *_: Any
    ) -> None:
        if reason.is_failure:
            logger.error("the broker refused the connection: %s", reason)
            return
        logger.info(
            "connected as %s (session present: %s)", self.config.client_id, flags.session_present
        )
        self.stats.connected, self.stats.connected_at = True, time.time()
        if self.config.retire:
            client.on_unsubscribe = self._on_unsubscribe
            client.unsubscribe(list(SUBSCRIPTIONS))
        elif self.config.protocol == "5":
            options = SubscribeOptions(qos=1)  # type: ignore[no-untyped-call]
            client.subscribe([(topic, options) for topic in SUBSCRIPTIONS])
        else:
            client.subscribe([(topic, 1) for topic in SUBSCRIPTIONS])

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, *_: Any
    ) -> None:
        if any(code.is_failure for code in codes):
            logger.error("the broker refused the subscriptions %s: %s", SUBSCRIPTIONS, codes)
            return
        logger.info("subscribed to %s", ", ".join(SUBSCRIPTIONS))

    def _on_unsubscribe(self, client: mqtt.Client, userdata: Any, mid: int, *_: Any) -> None:
        # The broker routes no new message to this session now; what it already queued for
        # it still comes (and is stored): once that has dried up, the worker stops.
        logger.info("retiring: unsubscribed; storing what the session still holds")
        self.unsubscribed_at = time.monotonic()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, *_: Any
    ) -> None:
        with self.ack_lock:  # no acknowledgement of this connection's messages after this
            self.generation += 1
        self.stats.connected = False
        if not self.stopping.is_set():
            logger.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.last_message_at = time.monotonic()
        self.inbox.append((message, time.time(), self.generation))
        if len(self.inbox) >= self.config.batch_size:
            self.ready.set()

    # --- the writer (the calling thread) -------------------------------------------------------

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self.stopping.set()
        self.ready.set()

    def run(self) -> None:
        """Until ``stop()``: batch, commit, acknowledge; then finish what has arrived."""
        self._connect()
        self.stats.state = "running"
        try:
            while not self.stopping.is_set():
                batch = self._next_batch()
                if batch:
                    self._commit(batch)
                self._uplinks(idle=not batch)
                self.stats.publish()
                self._report(every=REPORT_SECONDS)
                if self._retired():
                    logger.info("retired: the session is empty and receives nothing new")
                    break
            self.stats.state = "stopping"
            rest = self._take(len(self.inbox))  # bounded by the receive maximum
            if rest:
                self._commit(rest)
        finally:
            self._shutdown()

    def _connect(self) -> None:
        """Start paho's thread: it connects, and reconnects with backoff, by itself."""
        url = urlsplit(self.config.url)
        host, port = url.hostname or "127.0.0.1", url.port or 1883
        logger.info(
            "ingest worker %s: %s:%s, batches of %s or %s ms",
            self.config.name,
            host,
            port,
            self.config.batch_size,
            round(self.config.max_wait * 1000),
        )
        if self.config.protocol == "5":
            self.client.connect_async(
                host,
                port,
                KEEPALIVE_SECONDS,
                clean_start=False,
                properties=self._connect_properties(),
            )
        else:
            self.client.connect_async(host, port, KEEPALIVE_SECONDS)
        self.client.loop_start()

    def _retired(self) -> bool:
        if self.unsubscribed_at is None or self.inbox:
            return False
        quiet_since = max(self.unsubscribed_at, self.last_message_at)
        return time.monotonic() - quiet_since >= RETIRE_QUIET_SECONDS

    def _shutdown(self) -> None:
        self.stopping.set()  # the disconnect below is ours: no warning, no reconnect
        self.client.disconnect()
        self.client.loop_stop()
        self.stats.withdraw()
        self._report(every=0)
        left = len(self.inbox)
        if left:
            logger.info("%s message(s) left unacknowledged: the broker sends them again", left)

    def _next_batch(self) -> list[Received]:
        """A full batch as soon as there is one; a partial one once its first message is
        ``max_wait`` old; nothing after a quiet tick (the main loop then drains the HTTPS
        uploads, publishes the stats...) or when stopping."""
        size, max_wait = self.config.batch_size, self.config.max_wait
        quiet = False
        while not self.stopping.is_set():
            count = len(self.inbox)
            if count >= size:
                break
            if count:
                left = self.inbox[0][1] + max_wait - time.time()
                if left <= 0:
                    break
            elif quiet or self._uplinks_due(idle=True):
                return []
            else:
                left, quiet = TICK_SECONDS, True
            self.ready.clear()
            if len(self.inbox) < size:
                self.ready.wait(min(left, TICK_SECONDS))
        return self._take(min(len(self.inbox), size))

    def _take(self, count: int) -> list[Received]:
        inbox = self.inbox
        return [inbox.popleft() for _ in range(count)]

    def _commit(self, batch: list[Received]) -> None:
        """Store the batch, retrying until it commits (or the worker is told to stop); then
        acknowledge it."""
        incoming = [
            Incoming(
                topic=message.topic,
                payload=bytes(message.payload),
                received_at=datetime.fromtimestamp(arrived, tz=UTC),
                ref=message.mid,
            )
            for message, arrived, _ in batch
        ]
        failures = 0
        while True:
            started = time.monotonic()
            try:
                result = self.process_batch(incoming)
            except Exception as error:
                failures += 1
                self._failed(error, len(batch), failures)
                if self.stopping.is_set():
                    logger.warning(
                        "stopping: %s message(s) not stored; the broker sends them again",
                        len(batch),
                    )
                    return
                self.stopping.wait(min(0.5 * 2 ** (failures - 1), MAX_BACKOFF_SECONDS))
                continue
            break
        self._acknowledge(batch)
        if failures:
            logger.info("stored the batch after %s failed attempt(s)", failures)
        self.stats.state = "running"
        latency = time.monotonic() - started
        lag = time.time() - min(arrived for _, arrived, _ in batch)
        self.stats.record_batch(size=len(batch), result=result, latency=latency, lag=lag)

    def _failed(self, error: Exception, size: int, failures: int) -> None:
        self.stats.database_errors += 1
        self.stats.state = "waiting for the database"
        if failures == 1:
            logger.exception("could not store a batch of %s message(s)", size)
        else:
            logger.warning(
                "could not store a batch of %s message(s) (attempt %s): %s", size, failures, error
            )
        _reset_database_connection()

    def _acknowledge(self, batch: list[Received]) -> None:
        stale = 0
        with self.ack_lock:
            current = self.generation
            for message, _, generation in batch:
                if message.qos == 0:
                    continue
                if generation == current:
                    self.client.ack(message.mid, message.qos)
                else:
                    stale += 1
        if stale:
            logger.info(
                "%s message(s) arrived on an earlier connection: not acknowledged, the broker "
                "sends them again (stored once)",
                stale,
            )

    # --- HTTPS uploads, reports ------------------------------------------------------------------

    def _uplinks_due(self, *, idle: bool) -> bool:
        if not self.config.uplinks:
            return False
        now = time.monotonic()
        if now < self.uplinks_held_until:  # backing off after a failure
            return False
        if self.uplinks_more:
            return True
        interval = UPLINK_IDLE_SECONDS if idle else UPLINK_BUSY_SECONDS
        return now - self.uplinks_at >= interval

    def _uplinks(self, *, idle: bool) -> None:
        if not self._uplinks_due(idle=idle):
            return
        self.uplinks_at = time.monotonic()
        try:
            drained = self.drain_uplinks(limit=self.config.batch_size)
        except Exception as error:
            self.uplink_failures += 1
            self.stats.database_errors += 1
            logger.warning("could not drain the HTTPS uploads: %s", error)
            _reset_database_connection()
            wait = min(2.0**self.uplink_failures, MAX_BACKOFF_SECONDS)
            self.uplinks_held_until = time.monotonic() + wait
            return
        self.uplink_failures = 0
        self.uplinks_more = drained >= self.config.batch_size  # more are waiting
        self.stats.record_uplinks(drained)

    def _report(self, *, every: float) -> None:
        if time.monotonic() - self.reported_at < every:
            return
        self.reported_at = time.monotonic()
        stats = self.stats
        logger.info(
            "ingest: %s messages in %s batches: %s stored, %s duplicates, %s dead letters; "
            "%s uploads; %s database errors",
            stats.messages,
            stats.batches,
            stats.stored,
            stats.duplicates,
            stats.dead_letters,
            stats.uplinks,
            stats.database_errors,
        )


def _reset_database_connection() -> None:
    """The next attempt starts on a fresh connection (the server may have restarted)."""
    try:
        connection.close()
    except Exception:  # an already broken connection may fail to close: it is gone either way
        logger.debug("closing the database connection failed", exc_info=True)
