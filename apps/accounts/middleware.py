from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.functional import SimpleLazyObject

from .actors import actor_for_user


class ActorMiddleware:
    """``request.actor`` for portal and admin views: the signed-in user's Actor, built lazily."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        def build():  # type: ignore[no-untyped-def]
            user = request.user
            if not user.is_authenticated:
                return None
            source = "admin" if request.path.startswith("/admin/") else "portal"
            return actor_for_user(user, source=source)  # type: ignore[arg-type]

        request.actor = SimpleLazyObject(build)  # type: ignore[attr-defined]
        return self.get_response(request)
