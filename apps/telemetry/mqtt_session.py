"""A batch-oriented MQTT subscriber: the ingest worker's connection to the broker.

One persistent session (MQTT 3.1.1 ``clean_session=0`` or MQTT 5 ``clean_start=0`` with a
session expiry), QoS 1 subscriptions, manual acknowledgements, keepalive, reconnection with
exponential backoff, plain TCP or TLS. It implements what a subscriber needs and nothing else:
CONNECT / CONNACK, SUBSCRIBE / SUBACK, UNSUBSCRIBE / UNSUBACK, PUBLISH in (QoS 0 and 1; the
subscriptions ask for QoS 1, so the broker never sends QoS 2), PUBACK out, PINGREQ / PINGRESP
and DISCONNECT, per MQTT 3.1.1 (OASIS, 2014) and MQTT 5.0 (OASIS, 2019).

Why not paho-mqtt, used everywhere else: paho makes an ``MQTTMessage``, an ``MQTTMessageInfo``
and a ``threading.Condition`` for every message, calls back once per message, and writes one
PUBACK per ``ack()``. In the ingest worker that was about half of the process's CPU time, taken
from the thread that stores the batches (``docs/performance.md``). This reader takes whatever
the socket holds (up to 1 MiB at a time), parses every complete packet in one loop, hands the
PUBLISH packets to the worker as one list per read, and sends the acknowledgements of a whole
batch in one write.

Acknowledgements belong to one connection: every message is handed over with the generation of
the connection it arrived on, and ``acknowledge`` sends nothing for an older generation (after
a reconnection the packet id may name another message; the broker sends the old one again).
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Delivery", "ProtocolError", "SessionConfig", "Subscriber", "parse"]


# (topic, payload, packet id, qos, unix time the read that carried it returned, generation)
Delivery = tuple[str, bytes, int, int, float, int]

CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK = 2, 3, 4, 8, 9
UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 10, 11, 12, 13, 14
READ_BYTES = 1 << 20
CONNECT_TIMEOUT_SECONDS = 10.0
PING = bytes((PINGREQ << 4, 0))
# v5 CONNECT properties
SESSION_EXPIRY_INTERVAL, RECEIVE_MAXIMUM = 0x11, 0x21


class ProtocolError(ConnectionError):
    """The broker sent something this subscriber does not accept: the connection is dropped."""


@dataclass(frozen=True)
class SessionConfig:
    host: str
    port: int
    client_id: str
    subscriptions: tuple[str, ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False
    version: int = 4  # 4: MQTT 3.1.1, 5: MQTT 5
    keepalive: int = 30
    session_expiry: int = 30 * 24 * 3600  # MQTT 5 only (3.1.1 sessions never expire)
    receive_maximum: int = 65535  # MQTT 5 only
    max_backoff: float = 30.0


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (128 if value else 0))
        if not value:
            return bytes(out)


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def _packet(kind: int, flags: int, body: bytes) -> bytes:
    return bytes(((kind << 4) | flags,)) + _varint(len(body)) + body


def connect_packet(config: SessionConfig) -> bytes:
    flags = 0  # clean session / clean start off: the session persists
    payload = _string(config.client_id)
    if config.username is not None:
        flags |= 0x80
        payload += _string(config.username)
        if config.password is not None:
            flags |= 0x40
            payload += _string(config.password)
    header = _string("MQTT") + bytes((config.version, flags)) + struct.pack(">H", config.keepalive)
    if config.version == 5:
        properties = struct.pack(
            ">BIBH",
            SESSION_EXPIRY_INTERVAL,
            config.session_expiry,
            RECEIVE_MAXIMUM,
            min(config.receive_maximum, 65535),
        )
        header += _varint(len(properties)) + properties
    return _packet(1, 0, header + payload)


def subscribe_packet(config: SessionConfig, packet_id: int) -> bytes:
    body = struct.pack(">H", packet_id) + (b"\x00" if config.version == 5 else b"")
    for topic in config.subscriptions:
        body += _string(topic) + b"\x01"  # QoS 1 (v5 options: QoS 1, everything else default)
    return _packet(SUBSCRIBE, 2, body)


def unsubscribe_packet(config: SessionConfig, packet_id: int) -> bytes:
    body = struct.pack(">H", packet_id) + (b"\x00" if config.version == 5 else b"")
    for topic in config.subscriptions:
        body += _string(topic)
    return _packet(UNSUBSCRIBE, 2, body)


def pubacks(packet_ids: Sequence[int]) -> bytes:
    """PUBACKs for ``packet_ids`` in one buffer (a 2-byte PUBACK means success in MQTT 5 too)."""
    words = [(PUBACK << 12) | 2] * (2 * len(packet_ids))  # fixed header: type 4, length 2
    words[1::2] = packet_ids
    return struct.pack(f">{len(words)}H", *words)


def parse(
    data: bytes, version: int, arrived: float, generation: int
) -> tuple[list[Delivery], list[tuple[int, bytes]], int]:
    """Every complete packet at the start of ``data``: the PUBLISH packets as deliveries, the
    other packets as (type, body), and how many bytes they took (the rest is an incomplete
    packet, completed by the next read)."""
    deliveries: list[Delivery] = []
    control: list[tuple[int, bytes]] = []
    append = deliveries.append
    size, position = len(data), 0
    while size - position >= 2:
        header = data[position]
        start, length, shift = position + 1, 0, 0
        while True:  # remaining length: 1 to 4 bytes, 7 bits each
            if start >= size:
                return deliveries, control, position
            digit = data[start]
            length |= (digit & 127) << shift
            start += 1
            if digit < 128:
                break
            shift += 7
            if shift > 21:
                raise ProtocolError("malformed remaining length")
        end = start + length
        if end > size:
            break
        if header >> 4 == PUBLISH:
            topic_end = start + 2 + ((data[start] << 8) | data[start + 1])
            qos = (header >> 1) & 3
            body = topic_end
            packet_id = 0
            if qos:
                packet_id = (data[body] << 8) | data[body + 1]
                body += 2
            if version == 5:
                body = _skip_properties(data, body)
            topic = data[start + 2 : topic_end].decode()
            append((topic, data[body:end], packet_id, qos, arrived, generation))
        else:
            control.append((header >> 4, data[start:end]))
        position = end
    return deliveries, control, position


def _first_packet(data: bytes) -> tuple[int, bytes, int] | None:
    """The first packet of ``data`` as (type, body, end), None while incomplete. What follows
    it (a session's queued messages can come in the same read as the CONNACK) is left to
    ``parse``."""
    start, length, shift = 1, 0, 0
    while start < len(data):
        digit = data[start]
        length |= (digit & 127) << shift
        start += 1
        if digit < 128:
            end = start + length
            return (data[0] >> 4, data[start:end], end) if end <= len(data) else None
        shift += 7
        if shift > 21:
            raise ProtocolError("malformed remaining length")
    return None


def _skip_properties(data: bytes, position: int) -> int:
    length, shift = 0, 0
    while True:
        digit = data[position]
        position += 1
        length |= (digit & 127) << shift
        if digit < 128:
            return position + length
        shift += 7


class Subscriber:
    """The session's connection, kept by a thread of its own (``start`` / ``stop``). Only that
    thread touches the socket (an ``ssl.SSLSocket`` must not read and write from two threads):
    the worker queues its acknowledgements and the thread writes them between reads.

    Callbacks run on that thread: ``on_connect(session_present)`` (the worker then calls
    ``subscribe()`` or ``unsubscribe()``), ``on_subscribe(codes)``, ``on_unsubscribe()``,
    ``on_messages(deliveries)`` once per read, ``on_disconnect(reason)``."""

    def __init__(
        self,
        config: SessionConfig,
        *,
        on_messages: Callable[[list[Delivery]], None],
        on_connect: Callable[[bool], None] = lambda present: None,
        on_disconnect: Callable[[str], None] = lambda reason: None,
        on_subscribe: Callable[[bytes], None] = lambda codes: None,
        on_unsubscribe: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.on_messages, self.on_connect = on_messages, on_connect
        self.on_disconnect, self.on_subscribe, self.on_unsubscribe = (
            on_disconnect,
            on_subscribe,
            on_unsubscribe,
        )
        self.generation = 0  # bumped when a connection ends, under the lock
        self.connected = False
        self.lock = threading.Lock()  # guards generation, connected, outgoing
        self.outgoing: list[bytes] = []
        self.stopping = threading.Event()
        self.wake_reader, self.wake_writer = socket.socketpair()
        self.sent_at = self.received_at = 0.0
        self.packet_id = 0
        self.thread = threading.Thread(target=self._run, name="mqtt-session", daemon=True)

    # --- called by the worker ----------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Send what is queued, disconnect (the session stays on the broker), end the thread."""
        self.stopping.set()
        self._wake()
        self.thread.join(timeout=10)
        self.wake_reader.close()
        self.wake_writer.close()

    def acknowledge(self, packet_ids: Sequence[int], generation: int) -> bool:
        """Queue PUBACKs for ``packet_ids`` if they arrived on the current connection; False if
        not (the broker sends those messages again)."""
        with self.lock:
            if generation != self.generation or not self.connected:
                return False
            if packet_ids:
                self.outgoing.append(pubacks(packet_ids))
        self._wake()
        return True

    def subscribe(self) -> None:
        self._queue(subscribe_packet(self.config, self._next_id()))

    def unsubscribe(self) -> None:
        self._queue(unsubscribe_packet(self.config, self._next_id()))

    def _queue(self, data: bytes) -> None:
        with self.lock:
            self.outgoing.append(data)
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # closed by stop(), or full: the reader is awake
            self.wake_writer.send(b"!")

    def _next_id(self) -> int:
        self.packet_id = self.packet_id % 65535 + 1
        return self.packet_id

    # --- the connection's thread -------------------------------------------------------------

    def _run(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            reason = "closed"
            sock = None
            try:
                sock, rest = self._connect()
                backoff = 1.0
                self._read(sock, rest)
            except (OSError, ProtocolError) as error:
                reason = str(error) or type(error).__name__
            self._lost(sock, reason)
            if not self.stopping.wait(backoff):
                backoff = min(backoff * 2, self.config.max_backoff)

    def _lost(self, sock: socket.socket | None, reason: str) -> None:
        with self.lock:
            was_connected, self.connected = self.connected, False
            self.outgoing.clear()  # acknowledgements of this connection are void now
            self.generation += 1
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        if was_connected or not self.stopping.is_set():
            self.on_disconnect(reason)

    def _open(self) -> socket.socket:
        config = self.config
        sock = socket.create_connection((config.host, config.port), CONNECT_TIMEOUT_SECONDS)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if config.tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=config.host)
        return sock

    def _connect(self) -> tuple[socket.socket, bytes]:
        sock = self._open()
        try:
            sock.sendall(connect_packet(self.config))
            data = b""
            first = None
            while first is None:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("the broker closed the connection before CONNACK")
                data += chunk
                first = _first_packet(data)
            kind, body, used = first
            code = body[1] if len(body) >= 2 else 255
            if kind != CONNACK or code != 0:
                raise ConnectionError(f"the broker refused the connection (CONNACK code {code})")
        except BaseException:
            sock.close()
            raise
        with self.lock:
            self.connected = True
            self.outgoing.clear()
        self.sent_at = self.received_at = time.monotonic()
        self.on_connect(bool(body[0] & 1))
        return sock, data[used:]

    def _read(self, sock: socket.socket, rest: bytes) -> None:
        version, tick = self.config.version, self.config.keepalive / 4
        watched = [sock, self.wake_reader]
        while True:
            self._flush(sock)
            if self.stopping.is_set():
                sock.sendall(bytes((DISCONNECT << 4, 0)))
                return
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending()
            ready = watched if pending else select.select(watched, [], [], tick)[0]
            if self.wake_reader in ready:
                self.wake_reader.recv(4096)
            if sock in ready:
                chunk = sock.recv(READ_BYTES)
                if not chunk:
                    raise ConnectionError("the broker closed the connection")
                self.received_at = time.monotonic()
                data = rest + chunk if rest else chunk
                deliveries, control, used = parse(data, version, time.time(), self.generation)
                rest = data[used:]
                if deliveries:
                    self.on_messages(deliveries)
                for kind, body in control:
                    self._control(kind, body)
            self._keep_alive(sock)

    def _flush(self, sock: socket.socket) -> None:
        with self.lock:
            outgoing, self.outgoing = self.outgoing, []
        if outgoing:
            sock.sendall(b"".join(outgoing))
            self.sent_at = time.monotonic()

    def _keep_alive(self, sock: socket.socket) -> None:
        now = time.monotonic()
        if now - self.received_at > 1.5 * self.config.keepalive:
            raise ConnectionError("no packet from the broker within 1.5 keepalive periods")
        if now - self.sent_at >= self.config.keepalive / 2:
            sock.sendall(PING)
            self.sent_at = now

    def _control(self, kind: int, body: bytes) -> None:
        if kind == SUBACK:
            start = _skip_properties(body, 2) if self.config.version == 5 else 2
            self.on_subscribe(body[start:])
        elif kind == UNSUBACK:
            self.on_unsubscribe()
        elif kind == DISCONNECT:
            raise ConnectionError(f"the broker disconnected us (reason {body[:1].hex() or '00'})")
        elif kind != PINGRESP:
            raise ProtocolError(f"unexpected packet type {kind} from the broker")
