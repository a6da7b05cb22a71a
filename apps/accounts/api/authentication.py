"""DRF authentication: API keys (header only) and portal sessions, both resolving an Actor.

``request.auth`` is the Actor every scoped viewset uses; ``request.user`` is the user for
sessions and a stand-in principal for API keys.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.accounts.actors import actor_for_api_key, actor_for_user
from apps.accounts.models import APIKey
from apps.accounts.services import api_key_authenticate
from apps.core.actors import Actor

TOKEN_HEAD = "fo_api_"


class APIKeyPrincipal(AnonymousUser):
    """The ``request.user`` of an API-key request: authenticated, but not a person."""

    def __init__(self, api_key: APIKey) -> None:
        super().__init__()
        self.api_key = api_key

    @property
    def is_authenticated(self) -> bool:  # type: ignore[override]
        return True

    def __str__(self) -> str:
        return f"API key {self.api_key.prefix}"


class APIKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer fo_api_...`` or ``X-API-Key: fo_api_...``. Never a query string."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, Actor] | None:
        if any(
            value.startswith(TOKEN_HEAD)
            for values in request.query_params.lists()
            for value in values[1]
        ):
            # A token in a URL leaks into logs and browser history: refuse it loudly so the
            # caller fixes it, instead of silently ignoring it.
            raise exceptions.AuthenticationFailed(
                "API keys are accepted only in the Authorization or X-API-Key header."
            )
        token = request.headers.get("X-API-Key", "")
        header = request.headers.get("Authorization", "")
        if not token and header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() not in ("bearer", "token", "api-key"):
                return None
            token = value.strip()
        if not token:
            return None
        api_key = api_key_authenticate(token)
        if api_key is None:
            raise exceptions.AuthenticationFailed("The API key is invalid, expired or revoked.")
        return APIKeyPrincipal(api_key), actor_for_api_key(api_key)

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class SessionActorAuthentication(authentication.SessionAuthentication):
    """The portal's session (with CSRF), for the browsable API and the portal's own calls."""

    def authenticate(self, request: Request) -> tuple[Any, Actor] | None:
        result = super().authenticate(request)
        if result is None:
            return None
        user, _ = result
        return user, actor_for_user(user, source="api")


class APIKeyScheme(OpenApiAuthenticationExtension):
    target_class = APIKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "fo_api_<prefix>_<secret> (also accepted as an X-API-Key header)",
        }


class SessionActorScheme(OpenApiAuthenticationExtension):
    target_class = SessionActorAuthentication
    name = "session"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "apiKey", "in": "cookie", "name": settings.SESSION_COOKIE_NAME}
