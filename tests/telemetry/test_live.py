"""Live telemetry: the device websocket against the real ASGI application and the Redis channel
layer, and ``push_latest`` reaching the sockets that watch a device and nobody else.

Authorization matrix of the socket: anonymous -> closed 4401; a user of another organization,
or of the device's own in a role that reads no telemetry -> closed 4404; a reader -> joined.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.utils import timezone

from apps.accounts.roles import Role
from apps.telemetry import live
from apps.telemetry.models import LatestValues
from apps.telemetry.pipeline import process_batch
from config.asgi import application

from ..factories import make_member
from .analytics_support import make_version, register
from .conftest import message

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


def headers_for(user: Any) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return [ORIGIN, (b"cookie", cookie.encode())]


def socket(device: Any, headers: list[tuple[bytes, bytes]]) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application, f"/ws/telemetry/devices/{device.pk}/", headers=headers
    )


@pytest.fixture
def devices(tree) -> dict[str, Any]:
    version = make_version(tree["acme"], "Sensor")
    return {
        "watched": register(version, tree["retail"], "SN-W"),
        "quiet": register(version, tree["retail"], "SN-Q"),
        "foreign": register(make_version(tree["globex"], "Robot"), tree["globex"], "GX-1"),
    }


def values(temperature: float) -> dict[str, Any]:
    return {
        "organization_id": "ignored",
        "ts": "2026-11-30T10:00:05+00:00",
        "metrics_at": "2026-11-30T10:00:00+00:00",
        "vitals_at": "2026-11-30T10:00:05+00:00",
        "metrics": {"temperature": temperature},
        "vitals": {"battery_pct": 80.0},
    }


def connect_code(device: Any, headers: list[tuple[bytes, bytes]]) -> tuple[bool, int | None]:
    async def scenario() -> tuple[bool, int | None]:
        communicator = socket(device, headers)
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    return async_to_sync(scenario)()


def test_an_anonymous_socket_is_closed_with_4401(devices):
    assert connect_code(devices["watched"], [ORIGIN]) == (False, 4401)


@pytest.mark.parametrize(
    ("organization", "role"),
    [("globex", Role.OWNER), ("acme", Role.BILLING), ("hospital", Role.OWNER)],
)
def test_a_user_who_may_not_read_the_device_is_closed_with_4404(tree, devices, organization, role):
    user = make_member(tree[organization], role)
    assert connect_code(devices["watched"], headers_for(user)) == (False, 4404)
    assert str(devices["watched"].pk) not in live.watched_devices(fresh=True)


def test_a_reader_receives_the_pushes_of_its_device_only(tree, devices):
    headers = headers_for(make_member(tree["acme"], Role.VIEWER))
    watched, quiet = devices["watched"], devices["quiet"]

    async def scenario() -> list[Any]:
        communicator = socket(watched, headers)
        connected, _ = await communicator.connect()
        assert connected is True
        received = [await communicator.receive_json_from(timeout=5)]
        assert str(watched.pk) in await sync_to_async(live.watched_devices)(fresh=True)
        pushed = await sync_to_async(live.push_latest)(
            {quiet.pk: values(1.0), watched.pk: values(21.5)}
        )
        received.append(pushed)
        received.append(await communicator.receive_json_from(timeout=5))
        received.append(await communicator.receive_nothing(timeout=0.5))
        await communicator.disconnect()
        received.append(str(watched.pk) in await sync_to_async(live.watched_devices)(fresh=True))
        return received

    assert async_to_sync(scenario)() == [
        {"type": "hello", "device": str(watched.pk)},
        1,  # only the watched device was sent
        {
            "type": "telemetry.latest",
            "device": str(watched.pk),
            "ts": "2026-11-30T10:00:05+00:00",
            "metrics_at": "2026-11-30T10:00:00+00:00",
            "vitals_at": "2026-11-30T10:00:05+00:00",
            "metrics": {"temperature": 21.5},
            "vitals": {"battery_pct": 80.0},
        },
        True,  # nothing else arrived
        False,  # closing the socket unwatched the device
    ]


def test_a_push_without_stamps_reads_them_for_watched_devices(tree, devices):
    watched = devices["watched"]
    LatestValues.objects.create(
        device=watched,
        metrics={"temperature": 3.0},
        metrics_at=datetime(2026, 11, 30, 9, 0, tzinfo=UTC),
        vitals={},
        vitals_at=None,
    )
    headers = headers_for(make_member(tree["retail"], Role.OPERATOR))

    async def scenario() -> Any:
        communicator = socket(watched, headers)
        await communicator.connect()
        await communicator.receive_json_from(timeout=5)
        await sync_to_async(live.watched_devices)(fresh=True)
        await sync_to_async(live.push_latest)(
            {
                watched.pk: {
                    "organization_id": "x",
                    "ts": "t",
                    "metrics": {"temperature": 3.0},
                    "vitals": {},
                }
            }
        )
        message = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return message["metrics_at"], message["vitals_at"]

    assert async_to_sync(scenario)() == ("2026-11-30T09:00:00+00:00", None)


def test_an_unwatched_fleet_costs_no_query_and_no_send(devices, django_assert_num_queries):
    live.watched_devices(fresh=True)
    with django_assert_num_queries(0):
        assert live.push_latest({devices["quiet"].pk: values(1.0)}) == 0


def test_watch_entries_expire_by_themselves(devices):
    device = devices["quiet"]
    live.watch(device.pk, "specific.channel-1")
    assert str(device.pk) in live.watched_devices(fresh=True)
    # the entry of a socket that died without closing, past its expiry
    live._redis().zadd(live._key(), {f"{device.pk} specific.channel-1": time.time() - 1})
    assert str(device.pk) not in live.watched_devices(fresh=True)
    live.watch(devices["watched"].pk, "specific.channel-3")  # a later watch sweeps it away
    assert live._redis().zscore(live._key(), f"{device.pk} specific.channel-1") is None
    live.unwatch(devices["watched"].pk, "specific.channel-3")


def test_the_watched_set_is_read_once_per_interval(devices, settings):
    settings.TELEMETRY_LIVE_WATCH_CACHE_SECONDS = 60
    device = devices["quiet"]
    live.watched_devices(fresh=True)
    live.watch(device.pk, "specific.channel-2")
    try:
        assert str(device.pk) not in live.watched_devices()  # cached: not read again yet
        assert str(device.pk) in live.watched_devices(fresh=True)
    finally:
        live.unwatch(device.pk, "specific.channel-2")


def test_the_pipeline_pushes_stored_samples_to_a_watching_socket(tree, device):
    """End to end: ``process_batch`` commits, then its push reaches the open socket."""
    headers = headers_for(make_member(tree["acme"], Role.VIEWER))
    sampled = timezone.now().replace(microsecond=0)
    iso = sampled.isoformat().replace("+00:00", "Z")

    async def scenario() -> list[Any]:
        communicator = socket(device, headers)
        await communicator.connect()
        await communicator.receive_json_from(timeout=5)
        await sync_to_async(live.watched_devices)(fresh=True)
        telemetry = message(device, boot=1, seq=1, ts=iso, metrics={"temperature": 21.5})
        await sync_to_async(process_batch)([telemetry])
        first = await communicator.receive_json_from(timeout=5)
        heartbeat = message(
            device, "heartbeat", boot=1, seq=1, ts=iso, uptime_s=5, vitals={"battery_pct": 77.0}
        )
        await sync_to_async(process_batch)([heartbeat])
        second = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return [first, second]

    first, second = async_to_sync(scenario)()
    stamp = sampled.isoformat()
    assert first == {
        "type": "telemetry.latest",
        "device": str(device.pk),
        "ts": stamp,
        "metrics_at": stamp,
        "vitals_at": None,
        "metrics": {"temperature": 21.5},
        "vitals": {},
    }
    # the heartbeat brings vitals; the temperature keeps its own (older or equal) time
    assert (second["vitals"], second["vitals_at"], second["metrics_at"]) == (
        {"battery_pct": 77.0},
        stamp,
        stamp,
    )
    assert second["metrics"] == {"temperature": 21.5}


def test_two_readers_of_one_device_share_one_channel_and_both_receive(tree, devices):
    """Sockets of one process on one device are one member of the device's group (the
    per-process fan-out of ``apps.core.live``); each still gets the push."""
    readers = [headers_for(make_member(tree["acme"], Role.VIEWER)) for _ in range(2)]
    watched = devices["watched"]
    group = live.device_group(watched.pk)

    async def scenario() -> list[Any]:
        layer = get_channel_layer()
        sockets = []
        for headers in readers:
            communicator = socket(watched, headers)
            assert (await communicator.connect())[0] is True
            await communicator.receive_json_from(timeout=5)  # hello
            sockets.append(communicator)
        connection = layer.connection(layer.consistent_hash(group))
        found: list[Any] = [await connection.zcard(layer._group_key(group))]
        await sync_to_async(live.watched_devices)(fresh=True)
        await sync_to_async(live.push_latest)({watched.pk: values(4.0)})
        found += [(await each.receive_json_from(timeout=5))["metrics"] for each in sockets]
        for each in sockets:
            await each.disconnect()
        return found

    assert async_to_sync(scenario)() == [1, {"temperature": 4.0}, {"temperature": 4.0}]
