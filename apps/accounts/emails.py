"""Outgoing email for accounts (sent after commit)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse

from .models import Invitation


def invitation_url(token: str) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("portal:invitation-accept", args=[token])


def send_invitation(*, invitation_id: uuid.UUID, token: str) -> None:
    invitation = Invitation.objects.select_related("organization", "invited_by").get(
        pk=invitation_id
    )
    context = {"invitation": invitation, "url": invitation_url(token)}
    send_mail(
        subject=f"[Fleetops] You are invited to {invitation.organization.name}",
        message=render_to_string("accounts/email/invitation.txt", context),
        from_email=None,
        recipient_list=[invitation.email],
    )
