"""Portal pages of a person's notifications: the bell, the inbox and the preferences.

Everything here is the signed-in person's own: another person's notification is not found
(404), whatever its id.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.dateparse import parse_datetime
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.forms import apply_service_error
from apps.core.actors import Actor

from .forms_notify import PreferenceForm
from .models import Notification
from .notify import inbox

PAGE_SIZE = 30


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


def _cursor(value: str) -> tuple[datetime, uuid.UUID] | None:
    stamp, _, row_id = value.partition("|")
    try:
        created_at = parse_datetime(stamp)
        return (created_at, uuid.UUID(row_id)) if created_at else None
    except ValueError:
        return None


def _page(rows: QuerySet[Notification], before: str) -> tuple[list[Notification], str]:
    """One page, newest first, and the cursor of the next one ("" at the end)."""
    cursor = _cursor(before) if before else None
    if cursor is not None:
        created_at, row_id = cursor
        rows = rows.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=row_id))
    page = list(rows.select_related("organization").order_by("-created_at", "-id")[: PAGE_SIZE + 1])
    if len(page) <= PAGE_SIZE:
        return page, ""
    last = page[PAGE_SIZE - 1]
    return page[:PAGE_SIZE], f"{last.created_at.isoformat()}|{last.pk}"


@login_required
def notification_inbox(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    rows = inbox.inbox(actor=actor)
    only_unread = request.GET.get("unread") == "1"
    if only_unread:
        rows = rows.filter(read_at=None)
    page, next_cursor = _page(rows, request.GET.get("before", ""))
    context = {
        "notifications": page,
        "next_cursor": next_cursor,
        "only_unread": only_unread,
        "unread": inbox.unread_count(actor=actor),
        "zone": inbox.preference_for(actor=actor).timezone,
    }
    return render(request, "telemetry/notifications.html", context)


@login_required
def notification_bell(request: HttpRequest) -> HttpResponse:
    """The header's bell alone (htmx refreshes it)."""
    return render(request, "telemetry/notif_bell.html")


def _own(request: HttpRequest, notification_id: uuid.UUID) -> Notification:
    found = inbox.inbox(actor=_actor(request)).filter(pk=notification_id).first()
    if found is None:
        raise Http404("No such notification.")
    return found


@login_required
@require_POST
def notification_open(request: HttpRequest, notification_id: uuid.UUID) -> HttpResponse:
    """Mark read, then go where the notification points (or back to the inbox)."""
    notification = inbox.notification_mark_read(
        actor=_actor(request), notification=_own(request, notification_id)
    )
    target = notification.url
    if request.POST.get("stay") or not url_has_allowed_host_and_scheme(target, allowed_hosts=None):
        return redirect("notify:inbox")
    return redirect(target)


@login_required
@require_POST
def notification_read_all(request: HttpRequest) -> HttpResponse:
    marked = inbox.notifications_mark_all_read(actor=_actor(request))
    messages.success(request, f"{marked} notification{'s' if marked != 1 else ''} marked read.")
    return redirect("notify:inbox")


@login_required
@require_http_methods(["GET", "POST"])
def notification_preferences(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    current = inbox.preference_for(actor=actor)
    form = PreferenceForm(request.POST or None, initial=PreferenceForm.initial_for(current))
    if request.method == "POST" and form.is_valid():
        try:
            inbox.preference_update(actor=actor, **_preference_values(form))
        except ValidationError as error:
            apply_service_error(form, error)
        else:
            messages.success(request, "Your notification preferences were saved.")
            return redirect("notify:preferences")
    status = 400 if form.errors else 200
    return render(request, "telemetry/notif_preferences.html", {"form": form}, status=status)


def _preference_values(form: PreferenceForm) -> dict[str, Any]:
    data = form.cleaned_data
    return {name: data[name] for name in inbox.PREFERENCE_FIELDS}
