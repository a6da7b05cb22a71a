"""One device's MQTT life: connect, announce, heartbeat, stream telemetry, reconnect.

The connection (MQTT 3.1.1 over TLS, asyncio through aiomqtt):

- client id = MQTT username = certificate CN = the device id; the broker confines the device to
  ``devices/<id>/...``;
- a persistent session (``clean_session=False``) so commands sent while the device was away are
  queued by the broker and delivered when it returns;
- last will ``status`` = ``{"state":"offline"}``, retained, QoS 1: published by the broker if
  the device vanishes; on connect the device itself publishes ``{"state":"online"}``, retained;
- subscriptions to its own ``config/desired`` and ``commands/+`` (QoS 1).

Uplink data goes through the on-disk ``Outbox`` (telemetry, events), so it survives broker
restarts and crashes; heartbeats are sent only while connected, because a heartbeat that could
not be delivered is exactly the information "the device was unreachable then".

When the connection fails or drops, the device waits a random time with exponential backoff
(``backoff.Backoff``) and connects again; after a connection that lasted ``stable_after``
seconds the backoff starts over."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import random
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiomqtt

from .aio import ConnectGate, first_completed, reraise_swallowed_cancellation, sleep_unless
from .backoff import Backoff
from .commands import Runner, Seen
from .configuration import Applier
from .device_api import Transport
from .enroll import RenewalFailed, parse_time, renew, utc_now
from .metrics import SyntheticSensors, host_vitals
from .outbox import DEFAULT_LIMIT, Message, Outbox, OutboxFull
from .state import StateDir

log = logging.getLogger("agent.device")

ONLINE = json.dumps({"state": "online"})
OFFLINE = json.dumps({"state": "offline"})
COMMAND_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class Counters:
    """Running totals of one device, or of a whole simulated fleet (shared instance)."""

    enrolled: int = 0
    connected: int = 0  # connected right now
    connects: int = 0  # successful connections so far
    connect_failures: int = 0
    published: int = 0
    acked: int = 0
    received: int = 0
    dropped: int = 0  # messages refused: outbox full, or larger than the broker accepts
    outbox: int = 0  # messages waiting for a PUBACK


@dataclass(frozen=True)
class Options:
    telemetry_interval: float | None = 30.0  # seconds between samples; None/0: no telemetry
    samples: int | None = None  # stop sampling after this many per boot (demos, tests)
    heartbeat_interval: float | None = None  # None: the enrollment's heartbeat policy
    keepalive: int = 60
    operation_timeout: float = 30.0  # CONNACK, SUBACK and PUBACK
    backoff_base: float = 1.0
    backoff_cap: float = 120.0
    stable_after: float = 10.0
    fsync: bool = True
    outbox_limit: int = DEFAULT_LIMIT
    max_message_bytes: int = 262_144  # the broker's message_size_limit (MQTT_MAX_MESSAGE_BYTES)
    spread_start: bool = False  # first sample at a random point of the interval (fleets)
    platform_ca_file: str | None = None  # the platform's HTTPS CA, for renewals
    renew_check: float = 3600.0  # re-read renew_after at least this often


class Agent:
    """The device: ``await Agent(state).run(stop)`` until ``stop`` is set.

    Firmware code feeds data with ``telemetry(metrics)`` and ``event(kind, ...)``; both return
    once the message is safely in the outbox."""

    def __init__(
        self,
        state: StateDir,
        options: Options | None = None,
        *,
        sensors: SyntheticSensors | None = None,
        vitals: Callable[[], dict[str, Any]] | None = None,
        counters: Counters | None = None,
        gate: ConnectGate | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.state = state
        self.options = options or Options()
        self.identity = state.identity()
        self.outbox = Outbox(
            state.outbox_dir, fsync=self.options.fsync, limit=self.options.outbox_limit
        )
        self.sensors = sensors or SyntheticSensors(self.identity.serial)
        self.vitals = vitals or (lambda: host_vitals(state.path))
        self.counters = counters or Counters()
        self.counters.outbox += len(self.outbox)
        self.gate = gate
        self.rng = rng or random.Random()
        self.boot = 0
        self.connected = asyncio.Event()
        self._started = time.monotonic()
        self._sequences: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._tls: ssl.SSLContext | None = None
        self._reboot = asyncio.Event()
        self.commands = Runner(
            Seen(state.path / "commands", fsync=self.options.fsync), self._report, agent=self
        )
        self.configuration = Applier(
            state.path / "configuration", self._report_configuration, fsync=self.options.fsync
        )

    # --- what firmware calls ---------------------------------------------------------------
    def telemetry(self, metrics: dict[str, Any], *, ts: str | None = None) -> Message | None:
        """Queue one telemetry sample; ``(boot, seq)`` identifies it for de-duplication."""
        seq = self._next_seq("telemetry")
        body = {"boot": self.boot, "seq": seq, "ts": ts or utc_now(), "metrics": metrics}
        return self._enqueue("telemetry", body, key=f"telemetry:{self.boot}:{seq}")

    def event(
        self,
        kind: str,
        *,
        message: str = "",
        severity: str = "info",
        data: dict[str, Any] | None = None,
    ) -> Message | None:
        """Queue an event (a log line, an error, anything the platform should keep)."""
        seq = self._next_seq("events")
        body = {
            "boot": self.boot,
            "seq": seq,
            "ts": utc_now(),
            "type": kind,
            "severity": severity,
            "message": message,
            "data": data or {},
        }
        return self._enqueue("events", body, key=f"events:{self.boot}:{seq}")

    def _enqueue(self, suffix: str, body: dict[str, Any], *, key: str) -> Message | None:
        payload = json.dumps(body, separators=(",", ":"))
        if len(payload.encode()) > self.options.max_message_bytes:
            # the broker would acknowledge it and drop it: refuse it here, loudly
            self.counters.dropped += 1
            log.error(
                "%s: %s is %d bytes, over the limit", self.identity.device_id, key, len(payload)
            )
            return None
        try:
            message = self.outbox.put(self.identity.topic(suffix), payload, key=key)
        except OutboxFull:
            self.counters.dropped += 1
            log.warning("%s: outbox full, %s dropped", self.identity.device_id, key)
            return None
        if message is not None:
            self.counters.outbox += 1
            self._wake.set()
        return message

    def _report(self, command_id: str, body: dict[str, Any]) -> None:
        """A command's result, through the outbox (so it survives a broker outage)."""
        key = f"result:{command_id}:{body['status']}"
        self._enqueue(f"commands/{command_id}/result", body, key=key)

    def _report_configuration(self, body: dict[str, Any]) -> None:
        """What became of a desired configuration, through the outbox."""
        key = f"config:{body['version']}:{body['checksum']}:{body['status']}"
        self._enqueue("config/reported", body, key=key)

    def reboot(self) -> None:
        """Simulated reboot: leave the broker, count a new boot, connect again."""
        self._reboot.set()

    def _next_seq(self, stream: str) -> int:
        self._sequences[stream] = self._sequences.get(stream, 0) + 1
        return self._sequences[stream]

    # --- the lifetime of the process -------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Count a boot, then stay connected (reconnecting as needed) until ``stop`` is set."""
        # File and TLS set-up block on the disk and the CPU: in a worker thread they do not
        # stall the other devices of a simulated fleet sharing this event loop.
        self.boot = await asyncio.to_thread(self.state.next_boot)
        self._sequences.clear()
        log.info("%s: boot %d, %d queued", self.identity.device_id, self.boot, len(self.outbox))
        background = [asyncio.create_task(self._telemetry_loop(stop))]
        if self.identity.credential == "certificate":
            background.append(asyncio.create_task(self._renewals()))
        try:
            await self._connections(stop)
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)

    async def _connections(self, stop: asyncio.Event) -> None:
        backoff = Backoff(
            base=self.options.backoff_base, cap=self.options.backoff_cap, rng=self.rng
        )
        while not stop.is_set():
            began = time.monotonic()
            try:
                await self._session(stop)
            except (aiomqtt.MqttError, OSError) as error:
                log.warning("%s: disconnected: %s", self.identity.device_id, error)
            if stop.is_set():
                return
            if self._reboot.is_set():
                self._reboot.clear()
                self.boot = await asyncio.to_thread(self.state.next_boot)
                self._sequences.clear()
                log.info("%s: rebooted, boot %d", self.identity.device_id, self.boot)
                continue
            if time.monotonic() - began >= self.options.stable_after:
                backoff.reset()
            await sleep_unless(stop, backoff.next_delay())

    async def _session(self, stop: asyncio.Event) -> None:
        """One connection, from CONNECT to its loss (an exception) or to ``stop``."""
        async with contextlib.AsyncExitStack() as stack:
            async with self.gate or contextlib.nullcontext():
                if stop.is_set():
                    return
                if self._tls is None and self.identity.broker.tls:
                    # loading a key and certificates costs milliseconds of CPU: not on the loop
                    self._tls = await asyncio.to_thread(self._tls_context)
                client = self._client()
                try:
                    await stack.enter_async_context(client)
                except aiomqtt.MqttError:
                    self.counters.connect_failures += 1
                    raise
            self._set_connected(True)
            stack.callback(self._set_connected, False)
            log.info("%s: connected, %d queued", self.identity.device_id, len(self.outbox))
            await self._converse(client, stop)

    async def _converse(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        timeout = self.options.operation_timeout
        status = self.identity.topic("status")
        await client.publish(status, ONLINE, qos=1, retain=True, timeout=timeout)
        downlink = [(self.identity.topic(name), 1) for name in ("config/desired", "commands/+")]
        await client.subscribe(downlink, timeout=timeout)
        await first_completed(
            self._send(client),
            self._receive(client),
            self._heartbeats(client),
            stop.wait(),
            self._reboot.wait(),
        )
        # Leaving on purpose: the broker drops the last will on a clean DISCONNECT, so say
        # "offline" ourselves.
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(status, OFFLINE, qos=1, retain=True, timeout=5)

    def _set_connected(self, connected: bool) -> None:
        if connected:
            self.connected.set()
            self.counters.connected += 1
            self.counters.connects += 1
        else:
            self.connected.clear()
            self.counters.connected -= 1

    def _client(self) -> aiomqtt.Client:
        identity = self.identity
        token = identity.credential == "token"
        return aiomqtt.Client(
            identity.broker.host,
            (identity.broker.token_port or identity.broker.port) if token else identity.broker.port,
            identifier=identity.device_id,
            username=identity.device_id if token else None,
            password=self.state.token() if token else None,
            tls_context=self._tls_context() if identity.broker.tls else None,
            will=aiomqtt.Will(identity.topic("status"), OFFLINE, qos=1, retain=True),
            clean_session=False,
            keepalive=self.options.keepalive,
            timeout=self.options.operation_timeout,
            # small packets, each awaited: do not let Nagle's algorithm hold them back
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )

    def _tls_context(self) -> ssl.SSLContext:
        """Verifies the broker against the platform's root CA (hostname included) and presents
        our certificate; built once per certificate, since loading it costs CPU."""
        if self._tls is None:
            context = ssl.create_default_context(cafile=str(self.state.ca_file))
            if self.identity.credential == "certificate":
                context.load_cert_chain(str(self.state.credentials_file))
            self._tls = context
        return self._tls

    # --- inside a session ------------------------------------------------------------------
    async def _send(self, client: aiomqtt.Client) -> None:
        """Publish the outbox in order; a message leaves the disk only after its PUBACK."""
        while True:
            message = self.outbox.first()
            if message is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            self.counters.published += 1
            await client.publish(
                message.topic,
                message.payload,
                qos=message.qos,
                retain=message.retain,
                timeout=self.options.operation_timeout,
            )
            self.outbox.ack(message)
            self.counters.acked += 1
            self.counters.outbox -= 1
            reraise_swallowed_cancellation()

    async def _heartbeats(self, client: aiomqtt.Client) -> None:
        interval = self.options.heartbeat_interval or self.identity.heartbeat_interval
        while True:
            body = {
                "boot": self.boot,
                "seq": self._next_seq("heartbeat"),
                "ts": utc_now(),
                "uptime_s": int(time.monotonic() - self._started),
                "vitals": self.vitals(),
            }
            self.counters.published += 1
            await client.publish(
                self.identity.topic("heartbeat"),
                json.dumps(body, separators=(",", ":")),
                qos=1,
                timeout=self.options.operation_timeout,
            )
            self.counters.acked += 1
            reraise_swallowed_cancellation()
            await asyncio.sleep(interval)

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self.counters.received += 1
            payload = message.payload if isinstance(message.payload, bytes) else b""
            self.handle_downlink(
                str(message.topic).removeprefix(self.identity.topic_prefix), payload
            )

    def handle_downlink(self, suffix: str, payload: bytes) -> None:
        """A message for this device: desired configuration or a command (run once per id,
        ``agent.commands``)."""
        if suffix == "config/desired":
            self.state.save_desired(payload)
            log.info(
                "%s: desired configuration received (%d bytes)",
                self.identity.device_id,
                len(payload),
            )
            self.configuration.accept(payload)
        elif suffix.startswith("commands/") and COMMAND_ID.match(suffix.removeprefix("commands/")):
            self.commands.accept(payload)
        else:
            log.warning("%s: ignored a message on %r", self.identity.device_id, suffix)

    # --- sampling and renewal (independent of the connection) ------------------------------
    async def _telemetry_loop(self, stop: asyncio.Event) -> None:
        interval = self.options.telemetry_interval
        if not interval:
            return
        if self.options.spread_start and await sleep_unless(stop, self.rng.uniform(0, interval)):
            return
        produced = 0
        while self.options.samples is None or produced < self.options.samples:
            self.telemetry(self.sensors.read())
            produced += 1
            if await sleep_unless(stop, interval):
                return

    async def _renewals(self) -> None:
        failures = Backoff(base=60.0, cap=3600.0, rng=self.rng)
        while (due := parse_time(self.identity.renew_after)) is not None:
            wait = (due - dt.datetime.now(dt.UTC)).total_seconds()
            if wait > 0:
                await asyncio.sleep(min(wait, self.options.renew_check))
                continue
            try:
                transport = Transport(ca_file=self.options.platform_ca_file)
                self.identity = await renew(self.state, transport=transport)
                self._tls = None  # the next connection presents the new certificate
                failures.reset()
            except RenewalFailed as error:
                delay = error.retry_after or failures.next_delay()
                log.warning("%s: %s; retrying in %.0f s", self.identity.device_id, error, delay)
                await asyncio.sleep(delay)
