"""Back office for the notifications: channels (look, test, enable or disable), the
notifications sent and people's preferences, read-only.

Channels are created and their secrets rotated in the portal or the API, where the secret is
shown once; the admin never shows a secret. Channel deliveries, their failures and dead
letters are the outbox's: Core > Event deliveries, consumer ``notify.channel.<channel id>``
(redeliver from there).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from apps.accounts.admin import ReadMostlyAdmin, request_actor
from apps.core.actors import Actor
from apps.core.scoping import organization_ids_under

from .models import Notification, NotificationChannel, NotificationPreference
from .notify import services
from .notify.fanout import channel_consumer
from .notify.messages import masked_url


@admin.register(NotificationChannel)
class NotificationChannelAdmin(ReadMostlyAdmin):
    list_display = ("name", "organization", "kind", "enabled", "min_severity", "created_at")
    list_filter = ("kind", "enabled", "min_severity")
    search_fields = ("name", "organization__name")
    list_select_related = ("organization",)
    raw_id_fields = ("organization",)
    show_full_result_count = False
    fields = (
        "name",
        "organization",
        "kind",
        "shown_url",
        "enabled",
        "min_severity",
        "events",
        "previous_secret_expires_at",
        "deliveries",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    actions = ["send_test", "enable", "disable"]

    @admin.display(description="URL")
    def shown_url(self, channel: NotificationChannel) -> str:
        return masked_url(channel.kind, channel.url)

    @admin.display(description="Outbox deliveries")
    def deliveries(self, channel: NotificationChannel) -> SafeString:
        consumer = channel_consumer(channel.pk)
        url = reverse("admin:core_eventdelivery_changelist") + f"?consumer__exact={consumer}"
        return format_html('<a href="{}">{}</a>', url, consumer)

    @admin.action(description="Send a test message", permissions=["view"])
    def send_test(self, request: HttpRequest, queryset: QuerySet[NotificationChannel]) -> None:
        def write(actor: Actor, channel: NotificationChannel) -> bool:
            services.channel_send_test(actor=actor, channel=channel)
            return True

        self.apply(request, queryset, action="change", verb="Test queued", write=write)

    @admin.action(description="Enable selected channels", permissions=["view"])
    def enable(self, request: HttpRequest, queryset: QuerySet[NotificationChannel]) -> None:
        self._set_enabled(request, queryset, enabled=True)

    @admin.action(description="Disable selected channels", permissions=["view"])
    def disable(self, request: HttpRequest, queryset: QuerySet[NotificationChannel]) -> None:
        self._set_enabled(request, queryset, enabled=False)

    def _set_enabled(
        self, request: HttpRequest, queryset: QuerySet[NotificationChannel], *, enabled: bool
    ) -> None:
        def write(actor: Actor, channel: NotificationChannel) -> bool:
            if channel.enabled == enabled:
                return False
            services.channel_update(actor=actor, channel=channel, enabled=enabled)
            return True

        verb = "Enabled" if enabled else "Disabled"
        self.apply(request, queryset, action="change", verb=verb, write=write)


class _ReadOnly(admin.ModelAdmin):  # type: ignore[type-arg]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Notification)
class NotificationAdmin(_ReadOnly):
    """What was sent to whom: the inbox rows and the emails (``sent_at``)."""

    list_display = ("created_at", "user", "medium", "severity", "title", "read_at", "sent_at")
    list_filter = ("medium", "severity")
    search_fields = ("=user__email", "=event__id", "title")
    list_select_related = ("user",)
    raw_id_fields = ("user", "organization", "event")
    date_hierarchy = "created_at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Notification]:
        """Staff see the notifications of organizations where they may view alerts."""
        rows = super().get_queryset(request)
        if request.user.is_superuser:
            return rows
        paths = request_actor(request).paths_for("alert.view")
        if not paths:
            return rows.none()
        return rows.filter(organization_id__in=organization_ids_under(paths))


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(_ReadOnly):
    """People's choices, for support: platform staff only (they are no organization's)."""

    list_display = (
        "user",
        "portal",
        "email",
        "min_severity",
        "quiet_start",
        "quiet_end",
        "timezone",
    )
    list_filter = ("portal", "email", "min_severity")
    search_fields = ("=user__email",)
    list_select_related = ("user",)
    raw_id_fields = ("user",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[NotificationPreference]:
        rows = super().get_queryset(request)
        return rows if request.user.is_superuser else rows.none()
