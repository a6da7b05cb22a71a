"""The email of one notification: plain text and HTML, from templates/telemetry/email/.

Rendered in the installation's language (the worker has no request to take one from) with
times in the recipient's own time zone, written as ISO dates with the zone's name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.dateparse import parse_datetime

from apps.core.models import Event

from ..models import Notification, NotificationPreference
from .messages import absolute
from .policy import AlertNotice, zone

TEMPLATES = "telemetry/email/"


def local_time(value: datetime | None, timezone: str) -> str:
    """``2025-03-01 23:15 (Europe/Paris)``; "" for no time."""
    if value is None:
        return ""
    return f"{value.astimezone(zone(timezone)):%Y-%m-%d %H:%M} ({timezone})"


def _timezone_of(notification: Notification) -> str:
    found = NotificationPreference.objects.filter(user_id=notification.user_id).first()
    return found.timezone if found is not None else "UTC"


def context_for(notification: Notification, event: Event) -> dict[str, Any]:
    notice = AlertNotice.from_event(event.type, event.payload)
    timezone = _timezone_of(notification)
    happened = parse_datetime(notice.opened_at) if event.type == "alert.opened" else None
    return {
        "notification": notification,
        "notice": notice,
        "user": notification.user,
        "organization": notification.organization,
        "when": local_time(happened or event.created_at, timezone),
        "link": absolute(notification.url),
        "preferences_link": absolute(reverse("notify:preferences")),
        "inbox_link": absolute(reverse("notify:inbox")),
    }


def build_email(notification: Notification, event: Event) -> EmailMultiAlternatives:
    """The message, ready to ``send()`` through Django's configured email backend."""
    context = context_for(notification, event)
    with translation.override(settings.LANGUAGE_CODE):
        subject = render_to_string(f"{TEMPLATES}alert_subject.txt", context)
        text = render_to_string(f"{TEMPLATES}alert.txt", context)
        html = render_to_string(f"{TEMPLATES}alert.html", context)
    message = EmailMultiAlternatives(
        subject=" ".join(subject.split()),  # one line, whatever the template's whitespace
        body=text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[notification.user.email],
        headers={"Auto-Submitted": "auto-generated", "X-Fleetops-Event": str(event.pk)},
    )
    message.attach_alternative(html, "text/html")
    return message
