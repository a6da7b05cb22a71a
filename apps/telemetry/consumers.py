"""The device telemetry websocket: live values for one device's charts.

``/ws/telemetry/devices/<id>/`` authenticates the session, authorizes through the same access
function as the API (``access_telemetry_device``: the device viewable and its telemetry
readable), joins ``telemetry.device.<id>``, keeps the device marked as watched while open
(``live.watch``), relays what ``live.push_latest`` sends, and does nothing else.

Close codes: 4401 anonymous, 4403 an organization of the user requires MFA that the user has
not set up (as the portal's live socket), 4404 no such device or not the user's to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.http import Http404

from apps.accounts.actors import actor_for_user
from apps.accounts.consumers import lacks_required_mfa
from apps.core.live import GroupSocket

from . import live
from .analytics_samples import access_telemetry_device

CLOSE_UNAUTHENTICATED = 4401
CLOSE_MFA_REQUIRED = 4403
CLOSE_NOT_FOUND = 4404


@database_sync_to_async
def _may_read(user: Any, device_id: uuid.UUID) -> bool:
    actor = actor_for_user(user, source="portal")
    try:
        access_telemetry_device(actor=actor, device_id=device_id)
    except Http404:
        return False
    return True


class DeviceTelemetryConsumer(GroupSocket):
    """One device's live latest values, for a user who may read its telemetry (relayed
    through the process's hub, ``apps.core.live``)."""

    message_type = live.MESSAGE_TYPE
    device_id: str
    joined = False
    refresher: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        if await lacks_required_mfa(user):
            await self.close(code=CLOSE_MFA_REQUIRED)
            return
        device_id = self.scope["url_route"]["kwargs"]["device_id"]
        if not await _may_read(user, device_id):
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.device_id = str(device_id)
        await self.join([live.device_group(self.device_id)])
        await sync_to_async(live.watch)(self.device_id, self.channel_name)
        self.joined = True
        self.refresher = asyncio.create_task(self._keep_watching())
        await self.open({"type": "hello", "device": self.device_id})

    async def _keep_watching(self) -> None:
        """Refresh the watch entry well before it expires, while the socket stays open."""
        while True:
            await asyncio.sleep(live.WATCH_REFRESH_SECONDS)
            with contextlib.suppress(Exception):  # Redis down: the next round tries again
                await sync_to_async(live.watch)(self.device_id, self.channel_name)

    async def disconnect(self, code: int) -> None:
        if not self.joined:
            return
        if self.refresher is not None:
            self.refresher.cancel()
        with contextlib.suppress(Exception):  # the entry expires by itself anyway
            await sync_to_async(live.unwatch)(self.device_id, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
