"""Back office of the telemetry app: the dead letters here, the other parts in their own
modules (imported below so that Django's admin autodiscovery registers them).

Dead letters are read-only rows; the two writes, replay and discard, are actions that call the
pipeline's services with the signed-in staff member as the actor (scoped and audited there).
Staff see the dead letters of their organizations' subtrees (``for_actor``); superusers are
platform staff and also see those of unknown devices, which belong to no organization.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from apps.core.actors import Actor
from apps.core.admin import ReadOnlyAdmin

from . import (
    admin_alerts,  # noqa: F401  (registers the alerting admins)
    admin_notify,  # noqa: F401  (registers the notification admins)
)
from .models import DeadLetter
from .pipeline import dead_letter_discard, dead_letter_replay
from .views_deadletters import payload_views


def _actor(request: HttpRequest) -> Actor | None:
    actor = getattr(request, "actor", None)
    return actor if actor else None  # a lazy object wrapping None is falsy, not None


def _required_actor(request: HttpRequest) -> Actor:
    actor = _actor(request)
    if actor is None:
        raise PermissionDenied
    return actor


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin):
    list_display = (
        "received_at",
        "reason",
        "status",
        "topic",
        "device",
        "organization",
        "source",
        "replay_count",
    )
    list_filter = ("status", "reason", "source", "received_at")
    search_fields = ("=device__id", "^topic")
    list_select_related = ("device", "organization")
    raw_id_fields = ("device", "organization", "handled_by")
    date_hierarchy = "received_at"
    readonly_fields = ("payload_preview",)
    exclude = ("payload",)
    actions = ("replay", "discard")

    @admin.display(description="Payload")
    def payload_preview(self, letter: DeadLetter) -> str:
        payload = payload_views(bytes(letter.payload))
        return format_html(
            '<pre style="white-space: pre-wrap; max-width: 60rem">{}</pre><p>{} bytes{}</p>',
            payload["pretty"] or payload["text"],
            payload["size"],
            "" if payload["valid_utf8"] else ", not valid UTF-8",
        )

    def has_replay_permission(self, request: HttpRequest) -> bool:
        actor = _actor(request)
        return actor is not None and actor.has_any("telemetry.replay")

    @admin.action(description="Replay selected dead letters", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        result = dead_letter_replay(actor=_required_actor(request), dead_letter_ids=ids)
        self.message_user(
            request,
            f"{result.replayed} replayed, {result.refused} refused again "
            f"({len(ids) - result.replayed - result.refused} not new or not yours).",
            messages.SUCCESS if not result.refused else messages.WARNING,
        )

    @admin.action(description="Discard selected dead letters", permissions=["replay"])
    def discard(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        count = dead_letter_discard(actor=_required_actor(request), dead_letter_ids=ids)
        self.message_user(request, f"{count} discarded.", messages.SUCCESS)
