"""The live socket forwards a push only to readers holding its permission on its organization."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from apps.accounts.roles import Role
from apps.core import live

from ..factories import make_member
from .test_consumers import headers_for, run
from .test_consumers import live as socket

pytestmark = pytest.mark.django_db(transaction=True)


def received(user, organization, permission: str) -> list[object]:
    headers = headers_for(user)

    async def scenario() -> list[object]:
        communicator = socket(headers)
        connected, _ = await communicator.connect()
        assert connected
        await communicator.receive_json_from()  # hello
        await sync_to_async(live.broadcast)(
            organization_id=organization.pk,
            permission=permission,
            data={"type": "device.state", "id": "d1", "state": "active"},
        )
        messages = []
        if not await communicator.receive_nothing(timeout=1):
            messages.append(await communicator.receive_json_from())
        await communicator.disconnect()
        return messages

    return run(scenario)


def test_a_viewer_receives_device_states_of_a_child_organization(tree):
    viewer = make_member(tree["acme"], Role.VIEWER)
    assert received(viewer, tree["retail"], "device.view") == [
        {"type": "device.state", "id": "d1", "state": "active"}
    ]


def test_a_billing_member_receives_no_device_states(tree):
    billing = make_member(tree["acme"], Role.BILLING)
    assert received(billing, tree["acme"], "device.view") == []


def test_a_member_of_a_sibling_receives_nothing(tree):
    stranger = make_member(tree["globex"], Role.OWNER)
    assert received(stranger, tree["acme"], "device.view") == []
