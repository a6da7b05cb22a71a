from __future__ import annotations

from collections.abc import Callable

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
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


MFA_EXEMPT_PREFIXES = ("/accounts/", "/static/", "/media/", "/healthz", "/admin/")


class MFARequiredMiddleware:
    """Members of an organization that requires MFA must activate an authenticator app first.

    Portal pages redirect to allauth's TOTP activation page (with a message); session calls to
    the API get a 403 in the API's error envelope. allauth's own pages (sign-in, MFA, sign-out,
    email) and static files stay reachable.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self._blocked(request):
            return self._refuse(request)
        return self.get_response(request)

    @staticmethod
    def _blocked(request: HttpRequest) -> bool:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return False
        if request.path.startswith(MFA_EXEMPT_PREFIXES):
            return False
        from allauth.mfa.models import Authenticator

        from .services import user_mfa_required

        if not user_mfa_required(user):  # type: ignore[arg-type]
            return False
        return not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()

    @staticmethod
    def _refuse(request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            from apps.core.api.exceptions import envelope

            body = envelope(
                403,
                "mfa_required",
                "Your organization requires two-factor authentication: activate an "
                "authenticator app in the portal first.",
            )
            return JsonResponse(body, status=403)
        messages.warning(
            request,
            "Your organization requires two-factor authentication. "
            "Activate an authenticator app to continue.",
        )
        return HttpResponseRedirect(reverse("mfa_activate_totp"))
