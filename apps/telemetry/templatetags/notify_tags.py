"""``{% unread_notification_count as unread %}``: the header bell's number."""

from __future__ import annotations

from typing import Any

from django import template

from apps.telemetry.notify import inbox

register = template.Library()


@register.simple_tag(takes_context=True)
def unread_notification_count(context: dict[str, Any]) -> int:
    """The signed-in person's unread notifications (0 for anyone else); one indexed count."""
    request = context.get("request")
    actor = getattr(request, "actor", None)
    if not actor or actor.user_id is None:
        return 0
    return inbox.unread_count(actor=actor)
