"""The ingest worker (``manage.py ingest``): devices' uplink messages from MQTT into the pipeline.

One process, two threads. The MQTT session's thread (``apps.telemetry.mqtt_session``) keeps the
connection (keepalive, reconnects with backoff) and appends what every read of the socket
brought to an in-memory inbox; the main thread takes batches from the inbox (``--batch-size``
messages, or whatever arrived within ``--max-wait-ms`` of the first one), runs
``apps.telemetry.pipeline.process_batch`` (one transaction) and, only once it has committed,
acknowledges the batch's messages (manual acknowledgements, one write for the whole batch).
Reading the next batch from the socket overlaps with writing this one.

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

MQTT 3.1.1 by default (the lighter framing); shared subscriptions and persistent sessions behave
the same over both with Mosquitto, EMQX, HiveMQ and VerneMQ; ``--protocol 5`` adds a session
expiry and a receive maximum of two batches.

HTTPS uploads queued by the device API (``UplinkMessage``) go through the same pipeline:
``drain_uplinks()`` runs when the worker is idle, and at least every second.

SIGTERM or SIGINT: the batch in progress is committed and acknowledged, what has already
arrived is committed and acknowledged too, then the worker disconnects (its session stays).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from urllib.parse import unquote, urlsplit

from django.db import connection

from apps.devices import uplinks

from .ingest_stats import WorkerStats
from .mqtt_session import Delivery, SessionConfig, Subscriber
from .types import BatchResult, Incoming

__all__ = ["CLIENT_ID_PREFIX", "SUBSCRIPTIONS", "IngestWorker", "WorkerConfig", "subscriptions"]

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


def subscriptions() -> tuple[str, ...]:
    """Telemetry's topics and every topic another feature registered
    (``apps.devices.uplinks``: command results, configuration reports...)."""
    routed = tuple(f"$share/ingest/devices/+/{topic}" for topic in uplinks.topic_filters())
    return SUBSCRIPTIONS + routed


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
    """One MQTT session (its own thread) feeding one writer (the calling thread)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.stats = WorkerStats(config.name)
        self.stopping = threading.Event()
        self.ready = threading.Event()  # a full batch is waiting
        self.inbox: deque[Delivery] = deque()
        self.process_batch, self.drain_uplinks = _pipeline()
        self.uplinks_at = 0.0  # last drain of the HTTPS uploads (monotonic)
        self.uplinks_held_until = 0.0
        self.uplinks_more = False
        self.uplink_failures = 0
        self.reported_at = time.monotonic()
        self.last_message_at = 0.0
        self.unsubscribed_at: float | None = None  # --retire: when the broker confirmed
        self.session = Subscriber(
            _session_config(config),
            on_messages=self._on_messages,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            on_subscribe=self._on_subscribe,
            on_unsubscribe=self._on_unsubscribe,
        )

    # --- the MQTT side (the session's thread) --------------------------------------------------

    def _on_connect(self, session_present: bool) -> None:
        logger.info("connected as %s (session present: %s)", self.config.client_id, session_present)
        self.stats.connected, self.stats.connected_at = True, time.time()
        if self.config.retire:
            self.session.unsubscribe()
        else:
            self.session.subscribe()

    def _on_subscribe(self, codes: bytes) -> None:
        if any(code >= 0x80 for code in codes):
            topics = self.session.config.subscriptions
            logger.error("the broker refused the subscriptions %s: %s", topics, codes.hex())
            return
        logger.info("subscribed to %s", ", ".join(self.session.config.subscriptions))

    def _on_unsubscribe(self) -> None:
        # The broker routes no new message to this session now; what it already queued for
        # it still comes (and is stored): once that has dried up, the worker stops.
        logger.info("retiring: unsubscribed; storing what the session still holds")
        self.unsubscribed_at = time.monotonic()

    def _on_disconnect(self, reason: str) -> None:
        self.stats.connected = False
        if not self.stopping.is_set():
            logger.warning("disconnected from the broker (%s); reconnecting", reason)

    def _on_messages(self, deliveries: list[Delivery]) -> None:
        self.last_message_at = time.monotonic()
        self.inbox.extend(deliveries)
        if len(self.inbox) >= self.config.batch_size:
            self.ready.set()

    # --- the writer (the calling thread) -------------------------------------------------------

    def stop(self, signum: int | None = None, frame: FrameType | None = None) -> None:
        self.stopping.set()
        self.ready.set()

    def run(self) -> None:
        """Until ``stop()``: batch, commit, acknowledge; then finish what has arrived."""
        self._connect()
        _tune_garbage_collector()
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
        """Start the session's thread: it connects, and reconnects with backoff, by itself."""
        logger.info(
            "ingest worker %s: %s:%s, batches of %s or %s ms",
            self.config.name,
            self.session.config.host,
            self.session.config.port,
            self.config.batch_size,
            round(self.config.max_wait * 1000),
        )
        self.session.start()

    def _retired(self) -> bool:
        if self.unsubscribed_at is None or self.inbox:
            return False
        quiet_since = max(self.unsubscribed_at, self.last_message_at)
        return time.monotonic() - quiet_since >= RETIRE_QUIET_SECONDS

    def _shutdown(self) -> None:
        self.stopping.set()  # the disconnect below is ours: no warning, no reconnect
        self.session.stop()
        self.stats.withdraw()
        self._report(every=0)
        left = len(self.inbox)
        if left:
            logger.info("%s message(s) left unacknowledged: the broker sends them again", left)

    def _next_batch(self) -> list[Delivery]:
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
                left = self.inbox[0][4] + max_wait - time.time()
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

    def _take(self, count: int) -> list[Delivery]:
        inbox = self.inbox
        return [inbox.popleft() for _ in range(count)]

    def _commit(self, batch: list[Delivery]) -> None:
        """Store the batch, retrying until it commits (or the worker is told to stop); then
        acknowledge it."""
        incoming = _incoming(batch)
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
        lag = time.time() - batch[0][4]
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

    def _acknowledge(self, batch: list[Delivery]) -> None:
        """One write per connection the batch arrived on (almost always one); messages of an
        earlier connection are not acknowledged: the broker sends them again."""
        by_generation: dict[int, list[int]] = {}
        for _, _, packet_id, qos, _, generation in batch:
            if qos:
                by_generation.setdefault(generation, []).append(packet_id)
        stale = sum(
            len(packet_ids)
            for generation, packet_ids in by_generation.items()
            if not self.session.acknowledge(packet_ids, generation)
        )
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


def _tune_garbage_collector() -> None:
    """Everything loaded so far (Django, the pipeline, its caches) lives as long as the process:
    ``gc.freeze()`` keeps the cyclic collector from scanning it again on every full collection,
    and a higher first threshold runs the collector less often while a batch allocates its
    rows. Measured on a 5,000-message batch: ~44 -> ~30 µs of CPU per message (the collector
    only reclaims cycles; plain reference counting frees everything else as before)."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _session_config(config: WorkerConfig) -> SessionConfig:
    url = urlsplit(config.url)
    return SessionConfig(
        host=url.hostname or "127.0.0.1",
        port=url.port or (8883 if url.scheme == "mqtts" else 1883),
        client_id=config.client_id,
        subscriptions=subscriptions(),
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password or "") if url.username else None,
        tls=url.scheme == "mqtts",
        version=5 if config.protocol == "5" else 4,
        keepalive=KEEPALIVE_SECONDS,
        session_expiry=config.session_expiry,
        receive_maximum=config.receive_maximum,
        max_backoff=MAX_BACKOFF_SECONDS,
    )


def _incoming(batch: list[Delivery]) -> list[Incoming]:
    """The pipeline's view of a batch; the messages of one read share their arrival time, so
    each distinct time becomes a datetime once."""
    stamps: dict[float, datetime] = {}
    incoming = []
    for topic, payload, packet_id, _, arrived, _ in batch:
        received_at = stamps.get(arrived)
        if received_at is None:
            received_at = stamps[arrived] = datetime.fromtimestamp(arrived, tz=UTC)
        incoming.append(
            Incoming(topic=topic, payload=payload, received_at=received_at, ref=packet_id)
        )
    return incoming


def _reset_database_connection() -> None:
    """The next attempt starts on a fresh connection (the server may have restarted)."""
    try:
        connection.close()
    except Exception:  # an already broken connection may fail to close: it is gone either way
        logger.debug("closing the database connection failed", exc_info=True)
