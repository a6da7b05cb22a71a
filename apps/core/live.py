"""Pushes to open pages: one call after commit, and one fan-out per process to the sockets.

Sending: ``broadcast`` (services, after commit) sends one Channels message to the group
``org.<id>``; ``apps.telemetry.live`` sends to ``telemetry.device.<id>``. Redis is the channel
layer, and any process may send.

Receiving: websocket consumers derive from ``GroupSocket`` and join their groups through the
process's ``Hub`` instead of adding their own channel to each group. The hub adds one channel
per group per process (event loop) to the group, receives each message once, encodes its
``data`` once and sends that frame to every local socket of the group that wants it (the
socket's ``permits``: a billing user never receives device states). Channels would otherwise
hand each of a thousand consumers its own copy, dispatched and encoded one consumer at a time
(``docs/performance.md``, "Status change to the browser").
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from asgiref.sync import async_to_sync
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer

__all__ = ["GroupSocket", "Hub", "broadcast", "group_name", "hub"]

logger = logging.getLogger(__name__)

# Sockets sent to between two yields to the event loop: daphne's transports only buffer a frame
# and write it when the loop next runs, so yielding now and then lets the first sockets have
# their frames while the hub still sends to the rest.
YIELD_EVERY = 50
RETRY_SECONDS = 1.0  # after a failed receive (Redis away), before the next one
GROUP_EXPIRY_SECONDS = 86_400  # channels_redis' default, when the layer does not say


def group_name(organization_id: uuid.UUID | str) -> str:
    return f"org.{organization_id}"


def broadcast(*, organization_id: uuid.UUID | str, permission: str, data: dict[str, Any]) -> None:
    """Send ``data`` to readers holding ``permission`` on the organization; never raises
    (a push is a convenience: pages also read the API)."""
    message = {
        "type": "live.message",
        "organization": str(organization_id),
        "permission": permission,
        "data": data,
    }
    try:
        async_to_sync(get_channel_layer().group_send)(  # type: ignore[union-attr]
            group_name(organization_id), message
        )
    except Exception:
        logger.warning("could not push to %s", group_name(organization_id), exc_info=True)


class Member(Protocol):
    """What the hub needs of a socket (``GroupSocket`` is one)."""

    def wants(self, event: dict[str, Any]) -> bool: ...

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None: ...


@dataclass(eq=False)
class Fanout:
    """One group in one process: the channel the hub added to it and the local sockets."""

    group: str
    channel: str
    members: set[Member] = field(default_factory=set)
    task: asyncio.Task[None] | None = None

    async def deliver(self, event: dict[str, Any]) -> int:
        """Send ``event["data"]``, encoded once, to each member that wants it; returns how many
        were sent. One closed or failing socket does not stop the others."""
        if "data" not in event:
            return 0
        frame: str | None = None
        sent = 0
        for member in tuple(self.members):
            if not member.wants(event):  # also false once the socket has left
                continue
            if frame is None:
                frame = json.dumps(event["data"])
            try:
                await member.send(text_data=frame)
            except Exception:
                logger.warning("could not relay %s to a socket", self.group, exc_info=True)
                continue
            sent += 1
            if sent % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        return sent


class Hub:
    """The fan-out of one event loop (a daphne process has one): one channel per group.

    Joining a group the process already follows costs no Redis call; the last socket out of a
    group takes the process's channel out of it. Group changes are serialized by one lock so
    a leave and a join of the same group never reach Redis in the wrong order.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.fanouts: dict[str, Fanout] = {}
        self.joined: dict[Member, set[str]] = {}
        self.lock = asyncio.Lock()
        self.background: set[asyncio.Task[None]] = set()  # referenced until done
        self.renewer: asyncio.Task[None] | None = None
        # channels_redis forgets a group member after group_expiry; the hub outlives sockets.
        self.renew_seconds = getattr(layer, "group_expiry", GROUP_EXPIRY_SECONDS) / 4

    async def join(self, group: str, member: Member) -> None:
        """Relay ``group``'s messages to ``member`` from now on."""
        async with self.lock:
            fanout = self.fanouts.get(group)
            if fanout is None:
                channel = await self.layer.new_channel()
                await self.layer.group_add(group, channel)
                fanout = self.fanouts[group] = Fanout(group, channel)
                fanout.task = asyncio.create_task(self._relay(fanout))
                if self.renewer is None:
                    self.renewer = asyncio.create_task(self._renew_forever())
            fanout.members.add(member)
            self.joined.setdefault(member, set()).add(group)

    def leave(self, member: Member) -> None:
        """Forget ``member`` now (nothing more is sent to it); a group left empty is given up
        in the background. Synchronous, so a cancelled consumer can call it in ``finally``."""
        for group in self.joined.pop(member, ()):
            fanout = self.fanouts.get(group)
            if fanout is not None:
                fanout.members.discard(member)
                if not fanout.members:
                    self._background(self._retire(group))

    async def renew(self) -> None:
        """Add each followed group's channel again, which restarts its expiry."""
        async with self.lock:
            for fanout in self.fanouts.values():
                await self.layer.group_add(fanout.group, fanout.channel)

    async def _retire(self, group: str) -> None:
        async with self.lock:
            fanout = self.fanouts.get(group)
            if fanout is None or fanout.members:  # someone joined again meanwhile
                return
            del self.fanouts[group]
            if fanout.task is not None:
                fanout.task.cancel()
            if not self.fanouts and self.renewer is not None:
                self.renewer.cancel()
                self.renewer = None
            try:
                await self.layer.group_discard(group, fanout.channel)
            except Exception:  # the entry expires by itself; nothing reads the channel
                logger.warning("could not leave %s", group, exc_info=True)

    async def _relay(self, fanout: Fanout) -> None:
        while True:
            try:
                event = await self.layer.receive(fanout.channel)
            except Exception:
                logger.warning("could not receive for %s", fanout.group, exc_info=True)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            try:
                await fanout.deliver(event)
            except Exception:  # a bad event must not end the relay of the whole group
                logger.warning("could not relay an event of %s", fanout.group, exc_info=True)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.renew_seconds)
            try:
                await self.renew()
            except Exception:
                logger.warning("could not renew the live groups", exc_info=True)

    def _background(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub | None:
    """The running event loop's hub (None without a channel layer: nothing is pushed)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        layer = get_channel_layer()
        if layer is None:
            return None
        # A hub's tasks hold its loop, so a closed loop (one per async_to_sync call in tests
        # and scripts) would never leave the weak dictionary by itself.
        for closed in [each for each in _hubs if each.is_closed()]:
            del _hubs[closed]
        found = _hubs[loop] = Hub(layer)
    return found


class GroupSocket(AsyncJsonWebsocketConsumer):
    """A websocket consumer whose groups' messages come through the process's hub.

    A subclass authenticates and authorizes in ``connect``, calls ``join`` with its groups,
    then ``open`` with its greeting; it relays messages of type ``message_type`` that
    ``permits`` lets through, and nothing before its greeting. Leaving is automatic.
    """

    message_type: ClassVar[str]
    opened = False

    async def join(self, groups: Iterable[str]) -> None:
        found = hub()
        if found is None:
            return
        for group in groups:
            await found.join(group, self)

    async def open(self, greeting: dict[str, Any]) -> None:
        await self.accept()
        await self.send_json(greeting)
        self.opened = True

    def wants(self, event: dict[str, Any]) -> bool:
        return self.opened and event.get("type") == self.message_type and self.permits(event)

    def permits(self, event: dict[str, Any]) -> bool:
        return True

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # also when daphne cancels a consumer that did not stop in time
            self.opened = False
            found = _hubs.get(asyncio.get_running_loop())
            if found is not None:
                found.leave(self)
