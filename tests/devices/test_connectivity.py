"""``connectivity_apply``: status messages -> Device.connectivity, events and live pushes.

Real PostgreSQL and, for the pushes, the real websocket consumer on the Redis channel layer.
"""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

import pytest
from channels.db import database_sync_to_async

from apps.accounts.roles import Role
from apps.core.models import Event
from apps.devices.choices import DeviceState
from apps.devices.connectivity import Changed, StatusUpdate, Tally, connectivity_apply
from apps.devices.models import Device
from tests.accounts.test_consumers import headers_for, live, run
from tests.factories import make_member

from .registry_support import make_device, make_version

T0 = datetime.datetime(2026, 11, 30, 10, 0, tzinfo=datetime.UTC)
T1 = T0 + datetime.timedelta(seconds=5)
T2 = T0 + datetime.timedelta(seconds=9)


def status(
    device: Device | uuid.UUID | str, state: Any, at: datetime.datetime = T1
) -> StatusUpdate:
    device_id = device.pk if isinstance(device, Device) else device
    return StatusUpdate(f"devices/{device_id}/status", json.dumps({"state": state}).encode(), at)


def row(device: Device) -> tuple[str, datetime.datetime | None]:
    fresh = Device.objects.get(pk=device.pk)
    return fresh.connectivity, fresh.last_seen_at


def connectivity_events() -> list[tuple[str, str, Any, dict[str, Any]]]:
    return [
        (event.type, event.subject_id, event.organization_id, event.payload)
        for event in Event.objects.filter(type__in=["device.online", "device.offline"]).order_by(
            "type", "subject_id"
        )
    ]


@pytest.fixture
def fleet(tree) -> dict[str, Device]:
    version = make_version(tree["acme"])
    active = DeviceState.ACTIVE
    return {
        "new": make_device(tree["acme"], version, "SN-1", state=active),
        "up": make_device(
            tree["retail"], version, "SN-2", state=active, connectivity="online", last_seen_at=T0
        ),
        "down": make_device(
            tree["acme"], version, "SN-3", state=active, connectivity="offline", last_seen_at=T0
        ),
        "gone": make_device(tree["acme"], version, "SN-4", state=DeviceState.DECOMMISSIONED),
        "old": make_device(tree["acme"], version, "SN-5", state=DeviceState.REPLACED),
    }


@pytest.mark.django_db
def test_it_changes_only_what_differs_and_reports_each_change(tree, fleet):
    new, up, down = fleet["new"], fleet["up"], fleet["down"]
    changed = connectivity_apply(
        updates=[status(new, "online"), status(up, "offline"), status(down, "offline")]
    )

    assert sorted(changed, key=lambda change: change.serial) == [
        Changed(new.pk, tree["acme"].pk, "SN-1", "unknown", "online", T1),
        Changed(up.pk, tree["retail"].pk, "SN-2", "online", "offline", T0),
    ]
    assert row(new) == ("online", T1)
    assert row(up) == ("offline", T0)  # going offline keeps the last sighting
    assert row(down) == ("offline", T0)
    assert connectivity_events() == sorted(
        [
            (
                "device.offline",
                str(up.pk),
                tree["retail"].pk,
                {
                    "id": str(up.pk),
                    "serial": "SN-2",
                    "from": "online",
                    "to": "offline",
                    "last_seen_at": T0.isoformat(),
                },
            ),
            (
                "device.online",
                str(new.pk),
                tree["acme"].pk,
                {
                    "id": str(new.pk),
                    "serial": "SN-1",
                    "from": "unknown",
                    "to": "online",
                    "last_seen_at": T1.isoformat(),
                },
            ),
        ]
    )


@pytest.mark.django_db
def test_the_last_message_of_a_device_in_a_batch_wins(fleet):
    new, down = fleet["new"], fleet["down"]
    changed = connectivity_apply(
        updates=[
            status(new, "online", T1),
            status(new, "offline", T2),
            status(down, "offline", T1),
            status(down, "online", T2),
        ]
    )

    assert sorted((change.serial, change.connectivity) for change in changed) == [
        ("SN-1", "offline"),
        ("SN-3", "online"),
    ]
    assert row(new) == ("offline", None)
    assert row(down) == ("online", T2)


@pytest.mark.django_db
def test_last_seen_never_moves_backwards(fleet):
    down = fleet["down"]
    Device.objects.filter(pk=down.pk).update(last_seen_at=T2)
    connectivity_apply(updates=[status(down, "online", T1)])
    assert row(down) == ("online", T2)


@pytest.mark.django_db
def test_it_ignores_retired_unknown_and_malformed_messages_and_counts_them(fleet):
    new = fleet["new"]
    tally = Tally()
    good = json.dumps({"state": "online"}).encode()
    updates = [
        status(fleet["gone"], "online"),
        status(fleet["old"], "online"),
        status(uuid.uuid4(), "online"),  # unknown device
        status(fleet["up"], "online"),  # no change
        status(new, "rebooting"),
        status(new, None),
        StatusUpdate(f"devices/{new.pk}/status", b"online", T1),  # not JSON
        StatusUpdate(f"devices/{new.pk}/status", b'["online"]', T1),
        StatusUpdate(f"devices/{new.pk}/status", b"", T1),  # a cleared retained message
        StatusUpdate(f"devices/{new.pk}/status", good + b" " * 1024, T1),  # too large
        StatusUpdate(f"devices/{str(new.pk).upper()}/status", good, T1),
        StatusUpdate(f"devices/{new.pk.hex}/status", good, T1),
        StatusUpdate("devices/not-a-uuid/status", good, T1),
        StatusUpdate(f"devices/{new.pk}/heartbeat", good, T1),
        StatusUpdate(f"devices/{new.pk}/status/extra", good, T1),
        StatusUpdate(f"elsewhere/{new.pk}/status", good, T1),
    ]

    assert connectivity_apply(updates=updates, tally=tally) == []
    assert (tally.received, tally.malformed, tally.ignored, tally.changed) == (16, 12, 4, 0)
    assert [row(device) for device in fleet.values()] == [
        ("unknown", None),
        ("online", T0),
        ("offline", T0),
        ("unknown", None),
        ("unknown", None),
    ]
    assert connectivity_events() == []


@pytest.mark.django_db
def test_a_batch_of_500_costs_a_fixed_number_of_queries(tree, django_assert_num_queries):
    version = make_version(tree["acme"])
    devices = Device.objects.bulk_create(
        Device(
            organization=tree["acme"] if index % 2 else tree["retail"],
            manufacturer=tree["acme"],
            profile_version=version,
            serial=f"SN-{index:04}",
            state=DeviceState.ACTIVE,
            connectivity="online" if index % 2 else "offline",
        )
        for index in range(500)
    )
    flipped = [
        status(device, "offline" if device.connectivity == "online" else "online")
        for device in devices
    ]
    tally = Tally()

    # The UPDATE, and per event type one INSERT of events and one of their deliveries (to
    # alerting's state-change consumer), inside a SAVEPOINT / RELEASE pair here (the test's
    # transaction; the worker's is BEGIN / COMMIT).
    with django_assert_num_queries(7):
        changed = connectivity_apply(updates=flipped, tally=tally)

    assert (len(changed), tally.changed) == (500, 500)
    assert Device.objects.filter(connectivity="online").count() == 250
    assert Event.objects.filter(type="device.online").count() == 250
    assert Event.objects.filter(type="device.offline").count() == 250
    with django_assert_num_queries(3):  # applying the same batch again: the UPDATE alone
        assert connectivity_apply(updates=flipped) == []


@pytest.mark.django_db(transaction=True)
def test_the_change_reaches_the_organizations_pages_in_one_push_and_no_one_elses(tree, fleet):
    viewer = headers_for(make_member(tree["acme"], Role.VIEWER))
    stranger = headers_for(make_member(tree["globex"], Role.OWNER))
    billing = headers_for(make_member(tree["acme"], Role.BILLING))
    new, up, down = fleet["new"], fleet["up"], fleet["down"]
    updates = [status(new, "online"), status(down, "online"), status(up, "offline")]

    async def scenario() -> list[Any]:
        sockets = [live(headers) for headers in (viewer, stranger, billing)]
        for socket in sockets:
            connected, _ = await socket.connect()
            assert connected is True
            await socket.receive_json_from(timeout=5)  # hello
        await database_sync_to_async(connectivity_apply)(updates=updates)
        received = [
            await sockets[0].receive_json_from(timeout=5),
            await sockets[0].receive_json_from(timeout=5),
            await sockets[0].receive_nothing(timeout=0.5),
            await sockets[1].receive_nothing(timeout=0.2),
            await sockets[2].receive_nothing(timeout=0.2),
        ]
        for socket in sockets:
            await socket.disconnect()
        return received

    received = run(scenario)
    by_organization = sorted(received[:2], key=lambda push: len(push["messages"]))
    assert by_organization == [
        {
            "type": "batch",
            "messages": [
                {
                    "type": "device.connectivity",
                    "id": str(up.pk),
                    "connectivity": "offline",
                    "last_seen_at": T0.isoformat(),
                },
            ],
        },
        {
            "type": "batch",
            "messages": sorted(
                [
                    {
                        "type": "device.connectivity",
                        "id": str(new.pk),
                        "connectivity": "online",
                        "last_seen_at": T1.isoformat(),
                    },
                    {
                        "type": "device.connectivity",
                        "id": str(down.pk),
                        "connectivity": "online",
                        "last_seen_at": T1.isoformat(),
                    },
                ],
                key=lambda message: message["id"],
            ),
        },
    ]
    assert received[2:] == [True, True, True]


@pytest.mark.django_db(transaction=True)
def test_nothing_is_pushed_when_the_transaction_rolls_back(tree, fleet):
    from django.db import transaction

    viewer = headers_for(make_member(tree["acme"], Role.VIEWER))
    new = fleet["new"]

    def apply_then_fail() -> None:
        with pytest.raises(RuntimeError), transaction.atomic():
            connectivity_apply(updates=[status(new, "online")])
            raise RuntimeError("the surrounding work failed")

    async def scenario() -> Any:
        socket = live(viewer)
        await socket.connect()
        await socket.receive_json_from(timeout=5)
        await database_sync_to_async(apply_then_fail)()
        nothing = await socket.receive_nothing(timeout=0.5)
        await socket.disconnect()
        return nothing

    assert run(scenario) is True
    assert row(new) == ("unknown", None)
    assert connectivity_events() == []
