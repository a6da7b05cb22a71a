"""Websocket pieces of ``bench/live_latency.py``: the 1,000 browser stand-ins and the bare server.

Clients: a minimal RFC 6455 client on ``asyncio`` (handshake with the session cookie, unmasked
server frames parsed, pings answered). It does nothing per message but stamp the time
``data_received`` was called and keep the bytes, so the clients' own cost stays out of the
figures as far as one process can; both paths are received by the same code.

Bare server (``python bench/live_latency_ws.py serve PORT REDIS_URL CHANNEL``): Autobahn's
asyncio websocket server (Autobahn is what daphne speaks websockets with, here without Twisted,
Django or Channels) subscribed to one Redis pub/sub channel, sending every message to every
open connection as it arrives: the websocket push alone.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import struct
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

HANDSHAKE_TIMEOUT = 60.0
ATTEMPTS = 3  # a refused handshake is tried again (a loaded server times some out)


class Client(asyncio.Protocol):
    """One websocket connection; ``messages`` holds (monotonic time, payload) of text frames."""

    def __init__(self, request: bytes, pool: Pool) -> None:
        self.request = request
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.upgraded: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.messages: list[tuple[float, bytes]] = []
        self.closed = False
        self.status = ""  # the handshake's status line, or why there was none

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buffer += data
        if not self.upgraded.done():
            head, found, rest = self.buffer.partition(b"\r\n\r\n")
            if not found:
                return
            self.status = head.split(b"\r\n", 1)[0].decode(errors="replace")
            self.upgraded.set_result(head.startswith(b"HTTP/1.1 101"))
            self.buffer = rest
        self._frames(now)

    def _frames(self, now: float) -> None:
        while len(self.buffer) >= 2:
            opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
            offset = 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                (length,) = struct.unpack("!H", self.buffer[2:4])
                offset = 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                (length,) = struct.unpack("!Q", self.buffer[2:10])
                offset = 10
            if len(self.buffer) < offset + length:
                return
            payload = self.buffer[offset : offset + length]
            self.buffer = self.buffer[offset + length :]
            if opcode in (1, 2):
                self.messages.append((now, payload))
                self.pool.received(self)
            elif opcode == 9:  # ping: answer, or the server closes the connection
                self.send(10, payload)
            elif opcode == 8:
                self.closed = True

    def send(self, opcode: int, payload: bytes) -> None:
        """A client frame (masked, as RFC 6455 requires); short control payloads only."""
        mask = secrets.token_bytes(4)
        masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.upgraded.done():
            self.status = f"closed before the handshake ({exc or 'by the server'})"
            self.upgraded.set_result(False)


class Pool:
    """``count`` clients of ``ws://host:port/path`` sending ``headers``; one round at a time:
    how long after a publish each client received its next message."""

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str]) -> None:
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            f"Origin: http://{host}:{port}",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        self.host, self.port, self.head = host, port, lines
        self.clients: list[Client] = []
        self.refused: Counter[str] = Counter()  # failed handshakes by reason
        self.waiting = 0
        self.done: asyncio.Event | None = None

    async def connect(self, count: int, concurrency: int = 25) -> int:
        """Open ``count`` connections, ``concurrency`` handshakes at a time, trying refused ones
        again (``ATTEMPTS`` in all); returns how many were upgraded (and stay open)."""
        for _ in range(ATTEMPTS):
            await self._connect(count - len(self.clients), concurrency)
            if len(self.clients) == count:
                break
        return len(self.clients)

    async def _connect(self, count: int, concurrency: int) -> None:
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(concurrency)

        async def one() -> Client | None:
            key = base64.b64encode(os.urandom(16)).decode()
            request = "\r\n".join([*self.head, f"Sec-WebSocket-Key: {key}", "", ""]).encode()
            async with gate:
                try:
                    _, client = await loop.create_connection(
                        lambda: Client(request, self), self.host, self.port
                    )
                    ok = await asyncio.wait_for(client.upgraded, HANDSHAKE_TIMEOUT)
                except (OSError, TimeoutError) as error:
                    self.refused[type(error).__name__] += 1
                    return None
                if not ok:
                    self.refused[client.status] += 1
                return client if ok else None

        opened = await asyncio.gather(*(one() for _ in range(count)))
        self.clients += [client for client in opened if client is not None]

    async def settle(self, seconds: float) -> None:
        """Let greetings (the platform's "hello") arrive, then forget them."""
        await asyncio.sleep(seconds)
        for client in self.clients:
            client.messages.clear()

    def received(self, client: Client) -> None:
        if self.done is not None and len(client.messages) == 1:
            self.waiting -= 1
            if self.waiting == 0:
                self.done.set()

    async def round(
        self, publish: Callable[[], float], timeout: float
    ) -> list[tuple[float, bytes]]:
        """Run ``publish`` (in a thread: it may block on an acknowledgement; it returns the
        monotonic time it sent at) and wait until every client has a new message: each
        client's (latency, payload). Clients that got nothing within ``timeout`` are left out."""
        for client in self.clients:
            client.messages.clear()
        self.waiting, self.done = len(self.clients), asyncio.Event()
        sent = await asyncio.get_running_loop().run_in_executor(None, publish)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), timeout)
        self.done = None
        return [(c.messages[0][0] - sent, c.messages[0][1]) for c in self.clients if c.messages]

    def close(self) -> None:
        for client in self.clients:
            if client.transport is not None:
                client.transport.close()

    @property
    def open(self) -> int:
        return sum(not client.closed for client in self.clients)


# --- the bare server -----------------------------------------------------------------------------


async def serve(port: int, redis_url: str, channel: str) -> None:
    import redis.asyncio as aioredis
    from autobahn.asyncio.websocket import WebSocketServerFactory, WebSocketServerProtocol

    connections: set[Any] = set()

    class Relay(WebSocketServerProtocol):  # type: ignore[misc]
        def onOpen(self) -> None:
            connections.add(self)

        def onClose(self, was_clean: bool, code: int, reason: str) -> None:
            connections.discard(self)

    factory = WebSocketServerFactory(f"ws://127.0.0.1:{port}")
    factory.protocol = Relay
    server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", port)
    subscriber = aioredis.Redis.from_url(redis_url).pubsub()
    await subscriber.subscribe(channel)
    print("listening", flush=True)
    async with server:
        async for message in subscriber.listen():
            if message["type"] == "message":
                for connection in list(connections):
                    connection.sendMessage(message["data"], isBinary=False)


if __name__ == "__main__" and sys.argv[1:2] == ["serve"]:
    asyncio.run(serve(int(sys.argv[2]), sys.argv[3], sys.argv[4]))
