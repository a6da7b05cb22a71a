"""allauth hooks: sign-up only through an invitation, and the invitation proves the email."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.http import HttpRequest

from .models import Invitation

PENDING_INVITATION_KEY = "pending_invitation_token"


def pending_invitation(request: HttpRequest) -> Invitation | None:
    """The still-pending invitation whose token this browser session brought, if any."""
    from .services import invitation_by_token

    token = request.session.get(PENDING_INVITATION_KEY) if hasattr(request, "session") else None
    if not token:
        return None
    invitation = invitation_by_token(token)
    if invitation is None or invitation.status != "pending":
        return None
    return invitation


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        """Closed, unless ``ACCOUNT_OPEN_SIGNUP`` is set or the visitor holds an invitation."""
        if getattr(settings, "ACCOUNT_OPEN_SIGNUP", False):
            return True
        return pending_invitation(request) is not None

    def is_email_verified(self, request: HttpRequest, email: str) -> bool:
        """The invitation link reached this address, so signing up with it needs no new mail."""
        if super().is_email_verified(request, email):
            return True
        invitation = pending_invitation(request)
        return invitation is not None and invitation.email == email.strip().lower()
