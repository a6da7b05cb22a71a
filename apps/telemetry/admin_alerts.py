"""Back office for alerting: rules (look, enable, disable), alerts (look, acknowledge, resolve)
and the per-device condition rows (read-only, for support: why did this alert open?).

Rules are created and edited in the portal or the API (the condition JSON is validated there
field by field); here the actions call the same services with the staff member as the actor,
scoped and audited there. Alerts are fleet-sized: no full counts, raw-id widgets, filters on
indexed columns, search by exact device id or serial-number prefix.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.accounts.admin import ReadMostlyAdmin, request_actor
from apps.core.actors import Actor
from apps.core.scoping import organization_ids_under

from .alerting import services
from .choices import AlertStatus
from .models import Alert, AlertCondition, AlertRule


@admin.register(AlertRule)
class AlertRuleAdmin(ReadMostlyAdmin):
    list_display = (
        "name",
        "organization",
        "kind",
        "severity",
        "enabled",
        "open_after_seconds",
        "clear_after_seconds",
        "updated_at",
    )
    list_filter = ("kind", "severity", "enabled")
    search_fields = ("name", "organization__name")
    list_select_related = ("organization",)
    raw_id_fields = ("organization", "profile", "group", "device", "created_by")
    show_full_result_count = False
    readonly_fields = ("created_at", "updated_at")
    actions = ("enable", "disable")

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[AlertRule], on: bool) -> None:
        def write(actor: Actor, rule: AlertRule) -> bool:
            if rule.enabled == on:
                return False
            services.rule_update(actor=actor, rule=rule, enabled=on)
            return True

        verb = "Enabled" if on else "Disabled (open alerts resolved)"
        self.apply(request, queryset, action="change", verb=verb, write=write)

    @admin.action(description="Enable selected rules", permissions=["view"])
    def enable(self, request: HttpRequest, queryset: QuerySet[AlertRule]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(
        description="Disable selected rules (resolves their alerts)", permissions=["view"]
    )
    def disable(self, request: HttpRequest, queryset: QuerySet[AlertRule]) -> None:
        self._set_enabled(request, queryset, False)


@admin.register(Alert)
class AlertAdmin(ReadMostlyAdmin):
    list_display = ("opened_at", "severity", "status", "message", "rule", "device", "organization")
    list_filter = ("status", "severity")
    search_fields = ("=device__id", "^device__serial")
    search_help_text = "An exact device id, or the beginning of a serial number."
    list_select_related = ("rule", "device", "organization")
    raw_id_fields = ("organization", "rule", "device", "acknowledged_by", "resolved_by")
    date_hierarchy = "opened_at"
    show_full_result_count = False
    ordering = ("-opened_at", "-id")
    actions = ("acknowledge", "resolve")

    def _transition(
        self, request: HttpRequest, queryset: QuerySet[Alert], verb: str, done: str
    ) -> None:
        service = getattr(services, f"alert_{verb}")

        def write(actor: Actor, alert: Alert) -> bool:
            try:
                service(actor=actor, alert=alert, note="from the admin")
            except ValidationError:
                return False  # already acknowledged / resolved: counted as unchanged
            return True

        self.apply(request, queryset, action="change", verb=done, write=write)

    @admin.action(description="Acknowledge selected alerts", permissions=["view"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        self._transition(
            request, queryset.filter(status=AlertStatus.OPEN), "acknowledge", "Acknowledged"
        )

    @admin.action(description="Resolve selected alerts", permissions=["view"])
    def resolve(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        self._transition(request, queryset, "resolve", "Resolved")


@admin.register(AlertCondition)
class AlertConditionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Where each rule stands for each device: since when breaching or clearing, the newest
    data time it applied (older data is late and ignored)."""

    list_display = (
        "rule",
        "device",
        "breaching",
        "breaching_since",
        "clearing_since",
        "last_ts",
        "updated_at",
    )
    list_filter = ("breaching",)
    search_fields = ("=device__id", "^device__serial", "rule__name")
    list_select_related = ("rule", "device")
    raw_id_fields = ("rule", "device")
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[AlertCondition]:
        rows = super().get_queryset(request)
        if request.user.is_superuser:
            return rows
        paths = request_actor(request).paths_for("alertrule.view")
        if not paths:
            return rows.none()
        return rows.filter(rule__organization__in=organization_ids_under(paths))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
