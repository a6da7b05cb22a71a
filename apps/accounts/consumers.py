"""The live websocket: joins ``org.<id>`` groups for the organizations the user can see."""

from __future__ import annotations

from typing import Any

from allauth.mfa.models import Authenticator
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from .actors import actor_for_user
from .models import Organization
from .services import user_mfa_required

CLOSE_UNAUTHENTICATED = 4401
CLOSE_MFA_REQUIRED = 4403


def group_name(organization_id: Any) -> str:
    return f"org.{organization_id}"


@database_sync_to_async
def _visible_organization_ids(user: Any) -> list[str]:
    actor = actor_for_user(user, source="portal")
    return [
        str(pk) for pk in Organization.objects.for_actor(actor, "view").values_list("pk", flat=True)
    ]


@database_sync_to_async
def _lacks_required_mfa(user: Any) -> bool:
    """The portal's rule (``MFARequiredMiddleware``): an organization of the user requires MFA
    and the user has no authenticator app, so allauth could not have asked for a code."""
    if not user_mfa_required(user):
        return False
    return not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Authenticated (session); joins one group per visible organization and relays messages.

    Closes with 4401 when anonymous and 4403 when an organization of the user requires MFA
    and the user has not set it up (the portal redirects such users to the MFA set-up page).

    Later capabilities broadcast after commit with ``group_send(group_name(org), {"type":
    "live.message", "data": {...}})``.
    """

    groups: list[str]

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if await _lacks_required_mfa(user):
            await self.close(code=CLOSE_MFA_REQUIRED)
            return
        self.groups = [group_name(pk) for pk in await _visible_organization_ids(user)]
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "organizations": len(self.groups)})

    async def disconnect(self, code: int) -> None:
        for group in getattr(self, "groups", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def live_message(self, event: dict[str, Any]) -> None:
        await self.send_json(event["data"])
