from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def portal(request: HttpRequest) -> dict[str, Any]:
    """Navigation context: what the signed-in user's roles allow, and the current organization."""
    actor = getattr(request, "actor", None)
    if actor is None or not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    from .portal import navigation_for

    return navigation_for(request)
