"""The on-disk outbox: nothing the device measured is lost to a broker restart or a crash.

Every uplink message is first written to its own file (``000000000042.json``, atomically: see
``files.write_atomic``) and only then published. The file is deleted when the broker's PUBACK
arrives, never before. After a reconnect or a restart, whatever is still in the directory is
published again in file-name order, which is the order the messages were produced in.

The price is at-least-once delivery: a PUBACK lost with the connection means the message is sent
twice. Every message therefore carries a de-duplication identity the platform keys on (``boot``
and ``seq`` for telemetry); ``put(key=...)`` additionally refuses a second copy of a message that
is still pending (a command result produced twice, for example).

The outbox is bounded (``limit``): a device offline for weeks must not fill its flash. When full,
``put`` raises ``OutboxFull`` and the caller counts the sample as dropped; what was already queued
is kept, since the oldest data is usually the data nobody has yet."""

from __future__ import annotations

import json
import logging
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .files import make_private_directory, remove_stale_temporaries, write_atomic

log = logging.getLogger("agent.outbox")

FILE_NAME = re.compile(r"^(\d{12})\.json$")
DEFAULT_LIMIT = 100_000


class OutboxFull(Exception):
    """The outbox holds ``limit`` messages already."""


@dataclass(frozen=True)
class Message:
    """One pending uplink message and the file that holds it."""

    order: int
    topic: str
    payload: str
    qos: int
    retain: bool
    key: str | None
    path: Path


class Outbox:
    """Pending uplink messages of one device, oldest first."""

    def __init__(self, directory: Path, *, fsync: bool = True, limit: int = DEFAULT_LIMIT) -> None:
        self.directory = make_private_directory(directory)
        self.fsync = fsync
        self.limit = limit
        remove_stale_temporaries(self.directory)
        self._pending: deque[Message] = deque(self._load())
        self._keys: dict[str, Message] = {m.key: m for m in self._pending if m.key is not None}
        self._next = self._pending[-1].order + 1 if self._pending else 1

    def put(
        self,
        topic: str,
        payload: str,
        *,
        qos: int = 1,
        retain: bool = False,
        key: str | None = None,
    ) -> Message | None:
        """Persist a message; returns it, or None when a message with ``key`` is pending."""
        if key is not None and key in self._keys:
            return None
        if len(self._pending) >= self.limit:
            raise OutboxFull(f"{self.directory} holds {self.limit} messages")
        order = self._next
        path = self.directory / f"{order:012d}.json"
        record = {"topic": topic, "payload": payload, "qos": qos, "retain": retain, "key": key}
        write_atomic(path, json.dumps(record).encode(), mode=0o600, fsync=self.fsync)
        self._next += 1  # only once the file exists: a failed write reuses the number
        message = Message(order, topic, payload, qos, retain, key, path)
        self._pending.append(message)
        if key is not None:
            self._keys[key] = message
        return message

    def first(self) -> Message | None:
        """The oldest pending message (the next to publish)."""
        return self._pending[0] if self._pending else None

    def ack(self, message: Message) -> None:
        """The broker has it: forget the message. No fsync here: if a power cut undoes the
        deletion the message is sent once more, which its de-duplication identity absorbs."""
        if self._pending and self._pending[0] is message:
            self._pending.popleft()
        else:
            self._pending.remove(message)
        if message.key is not None and self._keys.get(message.key) is message:
            del self._keys[message.key]
        message.path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[Message]:
        return iter(list(self._pending))

    def _load(self) -> list[Message]:
        messages = []
        for path in sorted(self.directory.iterdir()):
            match = FILE_NAME.match(path.name)
            if match is None:
                continue
            message = self._read(path, int(match.group(1)))
            if message is not None:
                messages.append(message)
        return messages

    def _read(self, path: Path, order: int) -> Message | None:
        try:
            record = json.loads(path.read_text())
            return Message(
                order=order,
                topic=str(record["topic"]),
                payload=str(record["payload"]),
                qos=int(record.get("qos", 1)),
                retain=bool(record.get("retain", False)),
                key=record.get("key"),
                path=path,
            )
        except (OSError, ValueError, KeyError, TypeError):
            # Cannot happen through write_atomic; a damaged flash can. Keep the bytes for a
            # human instead of deleting them, and go on with the rest.
            quarantined = path.with_name(path.name + ".corrupt")
            path.rename(quarantined)
            log.error("outbox: unreadable message moved aside to %s", quarantined)
            return None
