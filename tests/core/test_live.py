"""The per-process fan-out of live pushes (``apps.core.live``): one channel per group and
process on the real Redis channel layer, one encoded frame for every local socket that wants
it, group membership kept right as sockets come and go.

The authorization matrix of each socket lives with its consumer (``tests/accounts/
test_consumers.py``, ``test_consumer_permissions.py``, ``tests/telemetry/test_live.py``); here
several sockets share one group, which is what the hub changes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer

from apps.accounts.roles import Role
from apps.core import live

from ..accounts.test_consumers import headers_for
from ..accounts.test_consumers import live as socket
from ..factories import make_member

pytestmark = pytest.mark.django_db(transaction=True)

STATE = {"type": "device.state", "id": "d1", "state": "active"}


def run(scenario: Any) -> Any:
    return async_to_sync(scenario)()


async def members_in_redis(group: str) -> int:
    """How many channels the channel layer holds in ``group`` (every process's)."""
    layer = get_channel_layer()
    connection = layer.connection(layer.consistent_hash(group))  # type: ignore[union-attr]
    return int(await connection.zcard(layer._group_key(group)))  # type: ignore[union-attr]


async def until(condition: Any, timeout: float = 5.0) -> bool:
    """Wait for a background step of the hub (leaving a group runs after the socket is gone)."""
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def opened(headers: list[tuple[bytes, bytes]]) -> Any:
    communicator = socket(headers)
    connected, _ = await communicator.connect()
    assert connected is True
    await communicator.receive_json_from(timeout=5)  # hello
    return communicator


async def push(organization: Any, permission: str = "device.view") -> None:
    await sync_to_async(live.broadcast)(
        organization_id=organization.pk, permission=permission, data=STATE
    )


def test_three_sockets_of_one_process_put_one_channel_in_the_group_and_all_receive(tree):
    users = [make_member(tree["acme"], role) for role in (Role.VIEWER, Role.OPERATOR, Role.OWNER)]
    everyone = [headers_for(user) for user in users]
    group = live.group_name(tree["acme"].pk)

    async def scenario() -> list[Any]:
        sockets = [await opened(headers) for headers in everyone]
        found: list[Any] = [await members_in_redis(group)]
        await push(tree["acme"])
        found.append([await each.receive_json_from(timeout=5) for each in sockets])
        found.append([await each.receive_nothing(timeout=0.3) for each in sockets])
        for each in sockets:
            await each.disconnect()
        found.append(await until(lambda: _is_empty(group)))
        return found

    assert run(scenario) == [1, [STATE, STATE, STATE], [True, True, True], True]


async def _is_empty(group: str) -> bool:
    return await members_in_redis(group) == 0


def test_within_one_group_each_socket_gets_only_what_its_role_permits(tree):
    viewer = headers_for(make_member(tree["acme"], Role.VIEWER))
    billing = headers_for(make_member(tree["acme"], Role.BILLING))

    async def scenario() -> list[Any]:
        sockets = [await opened(viewer), await opened(billing)]
        await push(tree["acme"])
        found = [
            await sockets[0].receive_json_from(timeout=5),
            await sockets[1].receive_nothing(timeout=0.5),
        ]
        for each in sockets:
            await each.disconnect()
        return found

    assert run(scenario) == [STATE, True]


def test_a_socket_that_left_gets_nothing_and_the_others_still_do(tree):
    staying, leaving = (headers_for(make_member(tree["retail"], Role.VIEWER)) for _ in range(2))
    group = live.group_name(tree["retail"].pk)

    async def scenario() -> list[Any]:
        kept, gone = await opened(staying), await opened(leaving)
        await gone.disconnect()
        await push(tree["retail"])
        found = [
            await kept.receive_json_from(timeout=5),
            await kept.receive_nothing(timeout=0.3),
            await members_in_redis(group),
        ]
        await kept.disconnect()
        return found

    assert run(scenario) == [STATE, True, 1]


def test_a_socket_joining_as_the_last_one_leaves_keeps_the_group(tree):
    """The last socket out gives the group up in the background; one joining right then must
    not find the process's channel taken out of the group after it joined."""
    first, second = (headers_for(make_member(tree["hospital"], Role.VIEWER)) for _ in range(2))
    group = live.group_name(tree["hospital"].pk)

    async def scenario() -> list[Any]:
        old = await opened(first)
        await old.disconnect()
        new = await opened(second)
        await asyncio.sleep(0.2)  # let the background leave run, if it wrongly would
        await push(tree["hospital"])
        found = [await members_in_redis(group), await new.receive_json_from(timeout=5)]
        await new.disconnect()
        return found

    assert run(scenario) == [1, STATE]


def test_renewing_puts_the_channel_back_when_redis_forgot_it(tree):
    headers = headers_for(make_member(tree["store"], Role.VIEWER))
    group = live.group_name(tree["store"].pk)

    async def scenario() -> list[Any]:
        communicator = await opened(headers)
        layer = get_channel_layer()
        connection = layer.connection(layer.consistent_hash(group))  # type: ignore[union-attr]
        await connection.delete(layer._group_key(group))  # type: ignore[union-attr]
        found: list[Any] = [await members_in_redis(group)]
        hub = live.hub()
        assert hub is not None
        await hub.renew()
        found.append(await members_in_redis(group))
        await push(tree["store"])
        found.append(await communicator.receive_json_from(timeout=5))
        await communicator.disconnect()
        return found

    assert run(scenario) == [0, 1, STATE]


def test_the_hub_renews_well_before_the_layer_forgets_a_group():
    async def scenario() -> float:
        hub = live.hub()
        assert hub is not None
        return hub.renew_seconds

    assert run(scenario) == 86_400 / 4  # channels_redis' group_expiry, the configured one


class Recorder:
    """A stand-in socket: what it was sent, or a failure on send."""

    def __init__(self, *, wants: bool = True, fails: bool = False) -> None:
        self.wanted, self.fails = wants, fails
        self.frames: list[str | None] = []

    def wants(self, event: dict[str, Any]) -> bool:
        return self.wanted

    async def send(
        self, text_data: str | None = None, bytes_data: bytes | None = None, close: bool = False
    ) -> None:
        if self.fails:
            raise ConnectionResetError("gone")
        self.frames.append(text_data)


def test_a_frame_is_encoded_once_and_a_failing_socket_does_not_stop_the_others():
    first, failing, refusing, last = (
        Recorder(),
        Recorder(fails=True),
        Recorder(wants=False),
        Recorder(),
    )
    fanout = live.Fanout("org.x", "specific.x!y", {first, failing, refusing, last})
    event = {"type": "live.message", "data": {"b": 1, "a": [2]}}

    sent = async_to_sync(fanout.deliver)(event)

    assert sent == 2
    assert first.frames == ['{"b": 1, "a": [2]}'] == last.frames
    assert first.frames[0] is last.frames[0]  # one string for every socket
    assert failing.frames == refusing.frames == []


def test_an_event_without_data_is_sent_to_nobody():
    member = Recorder()
    fanout = live.Fanout("org.x", "specific.x!y", {member})
    assert async_to_sync(fanout.deliver)({"type": "live.message"}) == 0
    assert member.frames == []
