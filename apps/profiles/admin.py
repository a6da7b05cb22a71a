"""Back office for the device catalog: profiles with their versions, read-only.

Profiles change only through ``apps.profiles.services`` (the portal and the API), so that a
version in use is never edited and every change is audited; the admin is for looking things up.
Non-superusers see only what ``for_actor`` gives their actor.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.accounts.admin import ScopedAdmin

from .models import DeviceProfile, ProfileVersion

VERSION_FIELDS = (
    "number",
    "connection_type",
    "hardware_revisions",
    "capabilities",
    "heartbeat_interval_seconds",
    "heartbeat_missed_beats",
    "attributes_schema",
    "telemetry_schema",
    "command_catalog",
    "configuration_schema",
    "created_by",
    "created_at",
    "updated_at",
)


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ProfileVersionInline(ReadOnlyMixin, admin.StackedInline):  # type: ignore[type-arg]
    model = ProfileVersion
    extra = 0
    fields = VERSION_FIELDS
    readonly_fields = VERSION_FIELDS
    ordering = ("-number",)
    show_change_link = False


@admin.register(DeviceProfile)
class DeviceProfileAdmin(ReadOnlyMixin, ScopedAdmin):
    list_display = ("name", "slug", "organization", "latest_number", "created_at")
    list_select_related = ("organization",)
    list_filter = (("organization__kind", admin.AllValuesFieldListFilter), "created_at")
    search_fields = ("name", "slug", "organization__name")
    readonly_fields = ("organization", "name", "slug", "description", "latest_number")
    fields = readonly_fields
    inlines = (ProfileVersionInline,)
    show_full_result_count = False
    date_hierarchy = "created_at"
