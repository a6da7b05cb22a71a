"""The live websocket: joins ``org.<id>`` groups for the organizations the user can see."""

from __future__ import annotations

from typing import Any

from allauth.mfa.models import Authenticator
from channels.db import database_sync_to_async

from apps.core.live import GroupSocket, group_name

from .actors import actor_for_user
from .models import Organization
from .services import user_mfa_required

CLOSE_UNAUTHENTICATED = 4401
CLOSE_MFA_REQUIRED = 4403


@database_sync_to_async
def _visible_organizations(user: Any) -> dict[str, frozenset[str]]:
    """Each organization the user can see, with the permissions the user holds there."""
    actor = actor_for_user(user, source="portal")
    visible = Organization.objects.for_actor(actor, "view").values_list("pk", "path")
    return {str(pk): actor.permissions_on(path) for pk, path in visible}


@database_sync_to_async
def lacks_required_mfa(user: Any) -> bool:
    """The portal's rule (``MFARequiredMiddleware``): an organization of the user requires MFA
    and the user has no authenticator app, so allauth could not have asked for a code."""
    if not user_mfa_required(user):
        return False
    return not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


class LiveConsumer(GroupSocket):
    """Authenticated (session); joins one group per visible organization and relays messages.

    Closes with 4401 when anonymous and 4403 when an organization of the user requires MFA
    and the user has not set it up (the portal redirects such users to the MFA set-up page).

    Messages come from ``apps.core.live.broadcast`` (through the process's hub) and are
    forwarded only when the user holds the message's permission on its organization.
    """

    message_type = "live.message"
    permissions: dict[str, frozenset[str]]

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if await lacks_required_mfa(user):
            await self.close(code=CLOSE_MFA_REQUIRED)
            return
        self.permissions = await _visible_organizations(user)
        await self.join(group_name(pk) for pk in self.permissions)
        await self.open({"type": "hello", "organizations": len(self.permissions)})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    def permits(self, event: dict[str, Any]) -> bool:
        permission = event.get("permission")
        held = self.permissions.get(str(event.get("organization")), frozenset())
        return permission is None or permission in held
