"""Portal navigation: what the signed-in user's roles allow."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def navigation_for(request: HttpRequest) -> dict[str, Any]:
    return {}
