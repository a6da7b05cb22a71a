"""Back office for platform staff: users, the organization tree, memberships, invitations, keys.

Every write goes through ``apps.accounts.services`` with the admin's Actor
(``request.actor``, source ``admin``), so each one leaves an audit row and a domain event.
Superusers see everything; other staff see only the rows ``Model.objects.for_actor`` gives
their actor, and may change or delete only the rows it allows for that action.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from apps.core import audit
from apps.core.actors import Actor

from . import services
from .models import APIKey, Invitation, Membership, Organization, User

USER_AUDIT_FIELDS = ("email", "full_name", "is_active", "is_staff", "is_superuser")


def request_actor(request: HttpRequest) -> Actor:
    """The signed-in admin's Actor, built by ``ActorMiddleware`` (source ``admin``)."""
    return request.actor  # type: ignore[attr-defined, no-any-return]


def error_text(error: ValidationError) -> str:
    return " ".join(error.messages)


class ScopedAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Non-superusers see and act on rows only through ``for_actor``."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.for_actor(request_actor(request), "view")  # type: ignore[attr-defined, no-any-return]

    def allowed(self, request: HttpRequest, queryset: QuerySet[Any], action: str) -> QuerySet[Any]:
        """The part of ``queryset`` the admin may ``action``."""
        if request.user.is_superuser:
            return queryset
        return queryset.for_actor(request_actor(request), action)  # type: ignore[attr-defined, no-any-return]

    def may(self, request: HttpRequest, obj: models.Model, action: str) -> bool:
        return self.allowed(request, type(obj)._default_manager.filter(pk=obj.pk), action).exists()

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or self.may(request, obj, "change"))

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or self.may(request, obj, "delete"))

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.related_model is Organization and not request.user.is_superuser:
            kwargs["queryset"] = Organization.objects.for_actor(request_actor(request), "view")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # A service refusing the write raises ValidationError inside the admin's transaction,
        # which rolls it back; show the reason instead of a server error.
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except ValidationError as error:
            self.message_user(request, error_text(error), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except ValidationError as error:
            self.message_user(request, error_text(error), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # bulk deletes would bypass the services
        return actions

    def apply(
        self,
        request: HttpRequest,
        queryset: QuerySet[Any],
        *,
        action: str,
        verb: str,
        write: Callable[[Actor, Any], bool],
    ) -> None:
        """Run ``write`` (a service call) on each row the admin may ``action``; report counts."""
        actor = request_actor(request)
        permitted = self.allowed(request, queryset, action)
        done = skipped = 0
        for obj in permitted:
            try:
                changed = write(actor, obj)
            except ValidationError as error:
                self.message_user(request, f"{obj}: {error_text(error)}", messages.WARNING)
                changed = False
            done, skipped = (done + 1, skipped) if changed else (done, skipped + 1)
        refused = queryset.count() - permitted.count()
        self.message_user(
            request, f"{verb}: {done}; unchanged: {skipped}; not permitted: {refused}."
        )


# --- users -------------------------------------------------------------------------------------


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)


class UserEditForm(UserChangeForm):  # type: ignore[type-arg]
    class Meta:
        model = User
        fields = "__all__"


class MembershipInline(admin.TabularInline):  # type: ignore[type-arg]
    """Read-only here: roles change in the Membership admin, through the services."""

    model = Membership
    fk_name = "user"
    fields = ("organization", "role", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request).select_related("organization")
        if request.user.is_superuser:
            return queryset
        return queryset.for_actor(request_actor(request), "view")  # type: ignore[attr-defined, no-any-return]


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreationForm
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("full_name",)}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("email", "usable_password", "password1", "password2"),
            },
        ),
    )
    list_display = ("email", "full_name", "is_staff", "is_active", "date_joined")
    list_filter = ("is_staff", "is_active")
    search_fields = ("email", "full_name")
    ordering = ("email",)
    readonly_fields = ("last_login", "date_joined")
    inlines = [MembershipInline]
    privileged_fields = ("is_staff", "is_superuser", "groups", "user_permissions")

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else []  # a new user has no memberships yet

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        actor = request_actor(request)
        members = Membership.objects.for_actor(actor, "view").values("user_id")
        return queryset.filter(Q(pk=actor.user_id) | Q(pk__in=members))

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = super().get_readonly_fields(request, obj)
        if obj is not None and not request.user.is_superuser:
            return (*fields, *self.privileged_fields)  # staff cannot raise anyone's privileges
        return fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deactivate instead: deleting would drop memberships without an audit

    @transaction.atomic
    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        before: dict[str, Any] = {}
        password_before = ""
        if change:
            stored = User.objects.get(pk=obj.pk)
            before = audit.snapshot(stored, USER_AUDIT_FIELDS)
            password_before = stored.password
        super().save_model(request, obj, form, change)
        changes = audit.diff(before, audit.snapshot(obj, USER_AUDIT_FIELDS))
        if obj.password != password_before:
            changes["password"] = ["(set)" if change else None, "(set)"]
        if changes or not change:
            audit.record(
                actor=request_actor(request),
                action="user.update" if change else "user.create",
                obj=obj,
                changes=changes,
            )

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        with transaction.atomic():  # the new password and its audit row commit together
            return super().user_change_password(request, id, form_url)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        match = request.resolver_match
        if match is not None and match.url_name == "auth_user_password_change":
            audit.record(
                actor=request_actor(request),
                action="user.password_change",
                obj=obj,
                changes={"password": ["(set)", "(set)"]},
            )
        return super().log_change(request, obj, message)


# --- organizations -----------------------------------------------------------------------------


@admin.register(Organization)
class OrganizationAdmin(ScopedAdmin):
    list_display = ("name", "kind", "parent", "depth", "require_mfa", "is_active")
    list_filter = ("kind", "require_mfa", "is_active")
    search_fields = ("name", "slug")
    raw_id_fields = ("parent",)
    list_select_related = ("parent",)
    show_full_result_count = False
    prepopulated_fields = {"slug": ("name",)}
    fields = ("name", "slug", "kind", "parent", "require_mfa", "is_active", "path", "depth")
    readonly_fields = ("path", "depth")
    actions = ["require_mfa", "deactivate"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:  # a new organization starts active; its path and depth are computed
            return ("name", "slug", "kind", "parent", "require_mfa")
        return super().get_fields(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # organizations are deactivated, never deleted (history points at them)

    def save_model(self, request: HttpRequest, obj: Organization, form: Any, change: bool) -> None:
        actor = request_actor(request)
        if not change:
            self._require(actor, "organization.add", obj.parent, "parent")
            created = services.organization_create(
                actor=actor,
                name=obj.name,
                parent=obj.parent,
                kind=obj.kind,
                slug=obj.slug,
                require_mfa=obj.require_mfa,
            )
            obj.pk = created.pk
            obj.refresh_from_db()
            return
        fields = {
            name: getattr(obj, name)
            for name in ("name", "slug", "kind", "require_mfa", "is_active")
            if name in form.changed_data
        }
        if "is_active" in fields and not self.may(request, obj, "delete"):
            raise ValidationError({"is_active": "You may not deactivate or reactivate it."})
        if fields:
            services.organization_update(actor=actor, organization=obj, **fields)
        if "parent" in form.changed_data:
            self._require(actor, "organization.move", obj, "parent")
            self._require(actor, "organization.add", obj.parent, "parent")
            if obj.parent is None:
                raise ValidationError({"parent": "An organization cannot become a root."})
            services.organization_move(actor=actor, organization=obj, new_parent=obj.parent)
        obj.refresh_from_db()

    @staticmethod
    def _require(
        actor: Actor, permission: str, organization: Organization | None, field: str
    ) -> None:
        if actor.is_platform_staff:
            return
        if organization is None or not actor.has_perm(permission, organization.path):
            raise ValidationError({field: f"You do not hold {permission} there."})

    @admin.action(description="Require MFA")
    def require_mfa(self, request: HttpRequest, queryset: QuerySet[Organization]) -> None:
        def write(actor: Actor, organization: Organization) -> bool:
            if organization.require_mfa:
                return False
            services.organization_update(actor=actor, organization=organization, require_mfa=True)
            return True

        self.apply(request, queryset, action="change", verb="Now requiring MFA", write=write)

    @admin.action(description="Deactivate")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Organization]) -> None:
        def write(actor: Actor, organization: Organization) -> bool:
            if not organization.is_active:
                return False
            services.organization_update(actor=actor, organization=organization, is_active=False)
            return True

        # deactivating is the organization's soft delete (as in the API)
        self.apply(request, queryset, action="delete", verb="Deactivated", write=write)


# --- memberships -------------------------------------------------------------------------------


@admin.register(Membership)
class MembershipAdmin(ScopedAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "organization__name")
    raw_id_fields = ("user", "organization")
    list_select_related = ("user", "organization")
    show_full_result_count = False
    actions = ["remove"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return ("user", "organization") if obj is not None else ()

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        actor = request_actor(request)
        if change:
            services.membership_change_role(actor=actor, membership=obj, role=obj.role)
            return
        organization = obj.organization
        if not actor.is_platform_staff and not actor.has_perm("membership.add", organization.path):
            raise ValidationError({"organization": "You may not add members there."})
        created = services.membership_create(
            actor=actor, organization=organization, user=obj.user, role=obj.role
        )
        obj.pk = created.pk
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        services.membership_delete(actor=request_actor(request), membership=obj)

    @admin.action(description="Remove selected memberships")
    def remove(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        def write(actor: Actor, membership: Membership) -> bool:
            services.membership_delete(actor=actor, membership=membership)
            return True

        self.apply(request, queryset, action="delete", verb="Removed", write=write)


# --- invitations and API keys (read-mostly) ----------------------------------------------------


class ReadMostlyAdmin(ScopedAdmin):
    """Created in the portal or the API (the secret is shown once there); here: look, revoke."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Invitation)
class InvitationAdmin(ReadMostlyAdmin):
    list_display = ("email", "organization", "role", "status", "expires_at", "created_at")
    list_filter = ("role",)
    search_fields = ("email", "organization__name")
    list_select_related = ("organization",)
    raw_id_fields = ("organization", "invited_by", "accepted_by")
    show_full_result_count = False
    exclude = ("token_hash",)
    readonly_fields = ("status", "created_at")
    actions = ["revoke"]

    @admin.action(description="Revoke selected invitations", permissions=["view"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[Invitation]) -> None:
        def write(actor: Actor, invitation: Invitation) -> bool:
            if invitation.status != "pending":
                return False
            services.invitation_revoke(actor=actor, invitation=invitation)
            return True

        self.apply(request, queryset, action="delete", verb="Revoked", write=write)


@admin.register(APIKey)
class APIKeyAdmin(ReadMostlyAdmin):
    list_display = ("name", "prefix", "organization", "role", "revoked_at", "last_used_at")
    list_filter = ("role",)
    search_fields = ("name", "prefix", "organization__name")
    list_select_related = ("organization",)
    raw_id_fields = ("organization", "created_by")
    show_full_result_count = False
    exclude = ("token_hash",)  # never shown, not even hashed
    readonly_fields = ("prefix", "created_at")
    actions = ["revoke"]

    @admin.action(description="Revoke selected API keys", permissions=["view"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        def write(actor: Actor, api_key: APIKey) -> bool:
            if api_key.revoked_at is not None:
                return False
            services.api_key_revoke(actor=actor, api_key=api_key)
            return True

        self.apply(request, queryset, action="delete", verb="Revoked", write=write)
