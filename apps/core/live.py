"""Pushes to open portal pages: one call, after commit, with the permission a reader needs.

Every browser socket (``apps.accounts.consumers.LiveConsumer``) joins ``org.<id>`` for each
organization its user can see, and forwards a message only when the user holds ``permission``
on the message's organization: a billing user never receives device states.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


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
