"""Portal pages of the telemetry dead letters: the list (filter by reason and status), one dead
letter with its raw payload, and the replay / discard buttons.

Pages name their organization in the URL (``/o/<id>/dead-letters/...``) and show the dead
letters of that organization's subtree the actor may view (``DeadLetter.objects.for_actor``,
``telemetry.view``). Outside the actor's view is 404; replay and discard need
``telemetry.replay`` (403 otherwise) and go through the pipeline's services.
"""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from apps.accounts.models import Organization
from apps.accounts.portal import organization_for, require_perm
from apps.core.scoping import organization_ids_under

from .choices import DeadLetterReason, DeadLetterStatus
from .models import DeadLetter
from .pipeline import dead_letter_discard, dead_letter_replay

PAGE_SIZE = 50
PAYLOAD_PREVIEW_BYTES = 64 * 1024
ALL = "all"


class DeadLetterFilterForm(forms.Form):
    reason = forms.ChoiceField(
        choices=[("", "Any reason"), *DeadLetterReason.choices], required=False
    )
    status = forms.ChoiceField(
        choices=[*DeadLetterStatus.choices, (ALL, "Any status")], required=False
    )

    def filters(self) -> dict[str, str]:
        """Field lookups; the status defaults to ``new`` (what is waiting for someone)."""
        data = self.cleaned_data if self.is_valid() else {}
        found = {"status": data.get("status") or DeadLetterStatus.NEW.value}
        if found["status"] == ALL:
            del found["status"]
        if data.get("reason"):
            found["reason"] = data["reason"]
        return found


def _actor(request: HttpRequest) -> Any:
    return request.actor  # type: ignore[attr-defined]


def dead_letters_under(actor: Any, organization: Organization) -> QuerySet[DeadLetter]:
    """Dead letters of ``organization``'s subtree that ``actor`` may view, newest first."""
    return (
        DeadLetter.objects.for_actor(actor, "view")
        .filter(organization__in=organization_ids_under([organization.path]))
        .select_related("device")
        .order_by("-received_at", "-id")
    )


def _parse_cursor(value: str) -> tuple[datetime.datetime, uuid.UUID] | None:
    stamp, _, row_id = value.partition("|")
    try:
        received_at = parse_datetime(stamp)
        return (received_at, uuid.UUID(row_id)) if received_at else None
    except ValueError:
        return None


@login_required
def dead_letter_list(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    organization = organization_for(request, organization_id, "telemetry.view")
    form = DeadLetterFilterForm(request.GET)
    rows = dead_letters_under(_actor(request), organization).filter(**form.filters())
    cursor = _parse_cursor(request.GET.get("before", ""))
    if cursor is not None:
        received_at, row_id = cursor
        rows = rows.filter(
            Q(received_at__lt=received_at) | Q(received_at=received_at, id__lt=row_id)
        )
    page = list(rows[: PAGE_SIZE + 1])
    older_url = ""
    if len(page) > PAGE_SIZE:
        page = page[:PAGE_SIZE]
        query = request.GET.copy()
        query["before"] = f"{page[-1].received_at.isoformat()}|{page[-1].id}"
        older_url = f"{request.path}?{query.urlencode()}"
    for letter in page:  # the device column names the device: the topic's last part is enough
        letter.topic_kind = letter.topic.rpartition("/")[2]  # type: ignore[attr-defined]
    context = {
        "organization": organization,
        "form": form,
        "letters": page,
        "older_url": older_url,
        "is_older_page": cursor is not None,
    }
    if request.headers.get("HX-Request"):
        return render(request, "telemetry/deadletter_rows.html", context)
    return render(request, "telemetry/deadletters.html", context)


def _letter(request: HttpRequest, organization: Organization, letter_id: uuid.UUID) -> DeadLetter:
    letter = dead_letters_under(_actor(request), organization).filter(pk=letter_id).first()
    if letter is None:
        raise Http404("No such dead letter.")
    return letter


def payload_views(payload: bytes) -> dict[str, Any]:
    """How the detail page shows a raw payload: as received (UTF-8, bad bytes replaced) and,
    when it is JSON, indented. The template escapes both."""
    preview = payload[:PAYLOAD_PREVIEW_BYTES]
    text = preview.decode("utf-8", errors="replace")
    pretty = ""
    if len(payload) <= PAYLOAD_PREVIEW_BYTES:
        try:
            pretty = json.dumps(json.loads(payload), indent=2, ensure_ascii=False)
        except ValueError:
            pretty = ""
    return {
        "text": text,
        "pretty": pretty if pretty != text else "",
        "size": len(payload),
        "truncated": len(payload) > PAYLOAD_PREVIEW_BYTES,
        "valid_utf8": _is_utf8(preview),
    }


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@login_required
def dead_letter_detail(
    request: HttpRequest, organization_id: uuid.UUID, letter_id: uuid.UUID
) -> HttpResponse:
    organization = organization_for(request, organization_id, "telemetry.view")
    letter = _letter(request, organization, letter_id)
    can_act = letter.status == DeadLetterStatus.NEW and _actor(request).has_perm(
        "telemetry.replay", organization.path
    )
    context = {
        "organization": organization,
        "letter": letter,
        "payload": payload_views(bytes(letter.payload)),
        "can_act": can_act,
    }
    return render(request, "telemetry/deadletter_detail.html", context)


@login_required
@require_POST
def dead_letter_act(
    request: HttpRequest, organization_id: uuid.UUID, letter_id: uuid.UUID, operation: str
) -> HttpResponse:
    """Replay or discard one dead letter (``telemetry.replay``)."""
    organization = organization_for(request, organization_id, "telemetry.view")
    letter = _letter(request, organization, letter_id)
    actor = _actor(request)
    require_perm(actor, "telemetry.replay", organization)  # holds on its whole subtree
    if letter.status != DeadLetterStatus.NEW:
        messages.warning(request, "This dead letter was already handled.")
    elif operation == "replay":
        result = dead_letter_replay(actor=actor, dead_letter_ids=[letter.pk])
        if result.replayed:
            messages.success(request, "Replayed: the message is stored.")
        else:
            letter.refresh_from_db()
            messages.error(request, f"Refused again: {letter.get_reason_display()}.")
    else:
        dead_letter_discard(actor=actor, dead_letter_ids=[letter.pk])
        messages.success(request, "Discarded.")
    return redirect("telemetry:dead-letter", organization_id=organization.pk, letter_id=letter.pk)
