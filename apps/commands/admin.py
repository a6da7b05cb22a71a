"""Back office for commands: per-device commands, read-only (they are created by executing a
change request and moved by device reports; cancel the request to stop them)."""

from __future__ import annotations

from django.contrib import admin

from apps.accounts.admin import ReadMostlyAdmin

from .models import Command


@admin.register(Command)
class CommandAdmin(ReadMostlyAdmin):
    list_display = (
        "name",
        "device",
        "organization",
        "status",
        "attempts",
        "issued_at",
        "sent_at",
        "received_at",
        "finished_at",
    )
    list_filter = ("status", "name")
    search_fields = ("=id", "=request__id", "device__serial", "name")
    list_select_related = ("device", "organization")
    raw_id_fields = ("organization", "request", "device")
    show_full_result_count = False
    date_hierarchy = None
    readonly_fields = (
        "created_at",
        "updated_at",
        "next_attempt_at",
        "timeout_at",
        "expires_at",
    )
