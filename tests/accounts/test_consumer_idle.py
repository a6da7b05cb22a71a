"""A live socket survives idle time: the channel layer must not inherit redis-py 8's 5-second
socket timeout (channels_redis #422), or every idle consumer crashes and misses pushes."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer

from apps.accounts.consumers import group_name
from apps.accounts.roles import Role

from ..factories import make_member
from .test_consumers import headers_for, live, run

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_an_idle_socket_still_receives_a_push_after_seven_seconds(tree):
    user = make_member(tree["acme"], Role.VIEWER)
    headers = headers_for(user)

    async def scenario() -> dict[str, object]:
        communicator = live(headers)
        connected, _ = await communicator.connect()
        assert connected
        assert await communicator.receive_json_from() == {"type": "hello", "organizations": 4}
        await asyncio.sleep(7)
        await get_channel_layer().group_send(
            group_name(tree["acme"].pk), {"type": "live.message", "data": {"type": "ping-1"}}
        )
        message = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return message

    assert run(scenario) == {"type": "ping-1"}
