"""Back office for change requests: requests (read-mostly; cancel through the service),
their approvals (read-only, inline and listed) and approval policies (edited through the
policy services, so scoped and audited there)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.accounts.admin import ReadMostlyAdmin, ScopedAdmin, request_actor
from apps.core.actors import Actor

from . import execution, policy_services, services
from .models import Approval, ApprovalPolicy, ChangeRequest

POLICY_FIELDS = (
    "profile",
    "name",
    "command_threshold",
    "device_threshold",
    "configuration_always",
    "configuration_critical_keys",
    "approvals_required",
)


class ApprovalInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Approval
    extra = 0
    can_delete = False
    fields = ("created_at", "approver_label", "decision", "revision", "content_hash", "comment")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ReadMostlyAdmin):
    list_display = (
        "title",
        "kind",
        "organization",
        "status",
        "revision",
        "required_approvals",
        "device_count",
        "created_by_label",
        "created_at",
    )
    list_filter = ("status", "kind", "resolve_at")
    search_fields = ("title", "organization__name", "created_by_label")
    list_select_related = ("organization",)
    raw_id_fields = ("organization", "created_by", "executed_by")
    show_full_result_count = False
    inlines = (ApprovalInline,)
    actions = ("cancel",)

    @admin.action(description="Cancel selected requests", permissions=["view"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[ChangeRequest]) -> None:
        def write(actor: Actor, change: ChangeRequest) -> bool:
            if change.status not in execution.CANCELLABLE:
                return False
            try:
                execution.change_request_cancel(actor=actor, request=change)
            except services.Refused as refused:
                raise ValidationError(refused.message) from None
            return True

        self.apply(request, queryset, action="change", verb="Cancelled", write=write)


@admin.register(Approval)
class ApprovalAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Every decision, read-only (the request's organization scopes non-superusers)."""

    list_display = ("request", "approver_label", "decision", "revision", "created_at")
    list_filter = ("decision",)
    search_fields = ("approver_label", "request__title")
    list_select_related = ("request",)
    raw_id_fields = ("request", "approver")
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Approval]:
        rows = super().get_queryset(request)
        if request.user.is_superuser:
            return rows
        visible = ChangeRequest.objects.for_actor(request_actor(request), "view")
        return rows.filter(request__in=visible.values("pk"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(ScopedAdmin):
    list_display = (
        "name",
        "organization",
        "profile",
        "command_threshold",
        "device_threshold",
        "configuration_always",
        "approvals_required",
    )
    list_filter = ("command_threshold", "configuration_always")
    search_fields = ("name", "organization__name")
    list_select_related = ("organization", "profile")
    raw_id_fields = ("organization", "profile")
    show_full_result_count = False

    def save_model(
        self, request: HttpRequest, obj: ApprovalPolicy, form: Any, change: bool
    ) -> None:
        actor = request_actor(request)
        fields = {name: getattr(obj, name) for name in POLICY_FIELDS}
        if change:
            saved = policy_services.policy_update(actor=actor, policy=obj, **fields)
        else:
            saved = policy_services.policy_create(
                actor=actor, organization=obj.organization, **fields
            )
        obj.pk = saved.pk

    def delete_model(self, request: HttpRequest, obj: ApprovalPolicy) -> None:
        policy_services.policy_delete(actor=request_actor(request), policy=obj)
