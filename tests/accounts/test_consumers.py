"""The live websocket against the real ASGI application and the Redis channel layer.

Authorization matrix: anonymous -> closed 4401; a user whose organization requires MFA
that they have not set up -> closed 4403; otherwise the socket joins ``org.<id>`` for every
organization the user can see (its own and those below), and never a sibling's.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from apps.accounts import services
from apps.accounts.consumers import group_name
from apps.accounts.models import User
from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from config.asgi import application

from ..factories import UserFactory, make_member
from .test_admin import sign_in_with_totp, totp_user

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


def session_headers(client: Client) -> list[tuple[bytes, bytes]]:
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    return [ORIGIN, (b"cookie", cookie.encode())]


def headers_for(user: User) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return session_headers(client)


def live(headers: list[tuple[bytes, bytes]]) -> WebsocketCommunicator:
    return WebsocketCommunicator(application, "/ws/live/", headers=headers)


def run(scenario: Any) -> Any:
    """Run one async scenario (its own event loop, so one Redis connection pool)."""
    return async_to_sync(scenario)()


def test_it_closes_an_anonymous_socket_with_4401(tree):
    async def scenario() -> tuple[bool, int | None]:
        communicator = live([ORIGIN])
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    assert run(scenario) == (False, 4401)


def test_it_refuses_a_foreign_origin(tree):
    user = make_member(tree["acme"], Role.VIEWER)
    headers = [(b"origin", b"https://evil.example"), headers_for(user)[1]]

    async def scenario() -> tuple[bool, int | None]:
        communicator = live(headers)
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    assert run(scenario) == (False, 1000)


def test_it_relays_its_own_and_child_organizations_but_not_a_siblings(tree):
    user = make_member(tree["acme"], Role.VIEWER)
    headers = headers_for(user)
    acme, retail, globex = tree["acme"], tree["retail"], tree["globex"]

    async def scenario() -> list[Any]:
        layer = get_channel_layer()
        communicator = live(headers)
        connected, _ = await communicator.connect()
        assert connected is True
        received = [await communicator.receive_json_from(timeout=5)]
        # The sibling's message goes first: if it leaked, it would arrive before ours.
        for organization in (globex, acme, globex, retail):
            await layer.group_send(
                group_name(organization.pk),
                {"type": "live.message", "data": {"from": organization.name}},
            )
        received.append(await communicator.receive_json_from(timeout=5))
        received.append(await communicator.receive_json_from(timeout=5))
        received.append(await communicator.receive_nothing(timeout=0.5))
        await communicator.disconnect()
        return received

    # acme's viewer sees Acme, Retail Co, Hospital and Store 1: four groups.
    assert run(scenario) == [
        {"type": "hello", "organizations": 4},
        {"from": "Acme"},
        {"from": "Retail Co"},
        True,
    ]


def test_a_child_member_does_not_hear_its_parent(tree):
    user = make_member(tree["retail"], Role.ADMIN)
    headers = headers_for(user)
    acme, store = tree["acme"], tree["store"]

    async def scenario() -> list[Any]:
        layer = get_channel_layer()
        communicator = live(headers)
        await communicator.connect()
        received = [await communicator.receive_json_from(timeout=5)]
        for organization in (acme, store):
            await layer.group_send(
                group_name(organization.pk),
                {"type": "live.message", "data": {"from": organization.name}},
            )
        received.append(await communicator.receive_json_from(timeout=5))
        received.append(await communicator.receive_nothing(timeout=0.5))
        await communicator.disconnect()
        return received

    assert run(scenario) == [{"type": "hello", "organizations": 2}, {"from": "Store 1"}, True]


def test_a_user_without_memberships_joins_no_group(tree):
    headers = headers_for(UserFactory())
    acme = tree["acme"]

    async def scenario() -> list[Any]:
        communicator = live(headers)
        await communicator.connect()
        received = [await communicator.receive_json_from(timeout=5)]
        await get_channel_layer().group_send(
            group_name(acme.pk), {"type": "live.message", "data": {"from": "Acme"}}
        )
        received.append(await communicator.receive_nothing(timeout=0.5))
        await communicator.disconnect()
        return received

    assert run(scenario) == [{"type": "hello", "organizations": 0}, True]


def test_it_answers_a_ping(tree):
    headers = headers_for(make_member(tree["hospital"], Role.TECHNICIAN))

    async def scenario() -> dict[str, Any]:
        communicator = live(headers)
        await communicator.connect()
        await communicator.receive_json_from(timeout=5)
        await communicator.send_json_to({"type": "ping"})
        reply = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return reply

    assert run(scenario) == {"type": "pong"}


def test_it_closes_with_4403_when_the_organization_requires_mfa_not_set_up(tree):
    services.organization_update(actor=SYSTEM, organization=tree["acme"], require_mfa=True)
    headers = headers_for(make_member(tree["acme"], Role.ADMIN))

    async def scenario() -> tuple[bool, int | None]:
        communicator = live(headers)
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    assert run(scenario) == (False, 4403)


def test_it_accepts_a_user_who_signed_in_with_the_required_mfa(tree):
    services.organization_update(actor=SYSTEM, organization=tree["acme"], require_mfa=True)
    user, secret = totp_user(tree["acme"], Role.ADMIN)
    client = Client()
    assert sign_in_with_totp(client, user, secret) == "/"

    async def scenario() -> dict[str, Any]:
        communicator = live(session_headers(client))
        connected, _ = await communicator.connect()
        assert connected is True
        hello = await communicator.receive_json_from(timeout=5)
        await communicator.disconnect()
        return hello

    assert run(scenario) == {"type": "hello", "organizations": 4}
