"""Back office for the audit log and the domain events outbox (read-only, plus actions).

Staff see what Django's model permissions let them open, narrowed to their organizations'
subtrees by the one scoping call, ``for_actor(request.actor, "view")``; superusers are platform
staff and see everything. Rows are never edited here: the only write is redelivering dead
letters, which goes through ``events.redeliver`` (scoped and audited).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse

from . import events
from .actors import Actor
from .models import AuditLog, Event, EventDelivery
from .selectors import audit_log_csv


def _actor(request: HttpRequest) -> Actor | None:
    """``request.actor`` (set lazily by ActorMiddleware), or None when nobody is signed in."""
    actor = getattr(request, "actor", None)
    return actor if actor else None  # a lazy object wrapping None is falsy, not None


def _required_actor(request: HttpRequest) -> Actor:
    actor = _actor(request)
    if actor is None:
        raise PermissionDenied
    return actor


class ReadOnlyAdmin(admin.ModelAdmin):
    """No add, change or delete from the admin; rows change only through services."""

    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return self.scope(request, super().get_queryset(request))

    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """Rows of ``queryset`` the signed-in staff member may view."""
        actor = _actor(request)
        if actor is None:
            return queryset.none()
        return queryset.for_actor(actor, "view")  # type: ignore[attr-defined]


@admin.register(AuditLog)
class AuditLogAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "action",
        "actor_label",
        "actor_kind",
        "source",
        "object_type",
        "object_repr",
        "organization",
    )
    list_filter = ("action", "source", "actor_kind", "created_at")
    search_fields = ("actor_label", "=object_id", "object_repr", "^action")
    list_select_related = ("organization", "actor_user")
    date_hierarchy = "created_at"
    actions = ("export_csv",)

    def has_export_permission(self, request: HttpRequest) -> bool:
        actor = _actor(request)
        return actor is not None and actor.has_any("auditlog.export")

    @admin.action(description="Export selected audit rows as CSV", permissions=["export"])
    def export_csv(
        self, request: HttpRequest, queryset: QuerySet[AuditLog]
    ) -> StreamingHttpResponse:
        rows = queryset.for_actor(_required_actor(request), "export")  # type: ignore[attr-defined]
        response = StreamingHttpResponse(audit_log_csv(rows), content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
        return response


class EventDeliveryInline(admin.TabularInline):
    model = EventDelivery
    fields = (
        "consumer",
        "status",
        "attempts",
        "next_attempt_at",
        "lease_until",
        "delivered_at",
        "last_error",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "type", "organization", "subject_type", "subject_id")
    list_filter = ("type", "created_at")
    search_fields = ("=id", "=subject_id")
    list_select_related = ("organization",)
    date_hierarchy = "created_at"
    inlines = (EventDeliveryInline,)


@admin.register(EventDelivery)
class EventDeliveryAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "event",
        "consumer",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "last_error",
    )
    list_filter = ("status", "consumer")
    search_fields = ("=event__id",)
    list_select_related = ("event",)
    raw_id_fields = ("event",)
    actions = ("redeliver_dead_letters",)

    def scope(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """Deliveries of the events the staff member may view."""
        actor = _actor(request)
        if actor is None:
            return queryset.none()
        if actor.is_platform_staff:
            return queryset
        return queryset.filter(event__in=Event.objects.for_actor(actor, "view").values("pk"))

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        actor = _actor(request)
        return actor is not None and actor.has_any("event.redeliver")

    @admin.action(description="Redeliver selected dead letters", permissions=["redeliver"])
    def redeliver_dead_letters(
        self, request: HttpRequest, queryset: QuerySet[EventDelivery]
    ) -> None:
        ids = list(queryset.values_list("id", flat=True))
        count = events.redeliver(actor=_required_actor(request), delivery_ids=ids)
        self.message_user(
            request,
            f"{count} dead letter{'s' if count != 1 else ''} queued for redelivery.",
            messages.SUCCESS,
        )
