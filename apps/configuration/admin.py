"""Back office for configuration: layers, history and per-device state, read-only here
(layers change through ``configuration`` change requests, which are audited and approved).
One action: recompute the chosen devices' desired configuration (after a profile's schema or
template changed, say), audited."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.accounts.admin import ReadMostlyAdmin, request_actor
from apps.core import audit

from . import services
from .models import (
    ConfigurationVersion,
    DeviceConfiguration,
    DeviceConfigurationState,
    GroupConfiguration,
    OrganizationConfiguration,
)


@admin.register(OrganizationConfiguration)
class OrganizationConfigurationAdmin(ReadMostlyAdmin):
    list_display = ("organization", "updated_at")
    search_fields = ("organization__name",)
    list_select_related = ("organization",)
    raw_id_fields = ("organization",)


@admin.register(GroupConfiguration)
class GroupConfigurationAdmin(ReadMostlyAdmin):
    list_display = ("group", "organization", "priority", "updated_at")
    search_fields = ("group__name", "organization__name")
    list_select_related = ("group", "organization")
    raw_id_fields = ("group", "organization")


@admin.register(DeviceConfiguration)
class DeviceConfigurationAdmin(ReadMostlyAdmin):
    list_display = ("device", "organization", "pinned_version", "updated_at")
    search_fields = ("device__serial",)
    list_select_related = ("device", "organization")
    raw_id_fields = ("device", "organization")
    show_full_result_count = False


@admin.register(ConfigurationVersion)
class ConfigurationVersionAdmin(ReadMostlyAdmin):
    list_display = ("device", "version", "checksum", "created_by_label", "created_at")
    search_fields = ("device__serial", "checksum")
    list_select_related = ("device",)
    raw_id_fields = ("device", "organization", "change_request", "created_by")
    show_full_result_count = False


@admin.register(DeviceConfigurationState)
class DeviceConfigurationStateAdmin(ReadMostlyAdmin):
    list_display = (
        "device",
        "status",
        "desired_version",
        "reported_version",
        "reported_status",
        "reported_at",
        "out_of_sync_since",
    )
    list_filter = ("status", "reported_status")
    search_fields = ("device__serial",)
    list_select_related = ("device",)
    raw_id_fields = ("device", "organization")
    show_full_result_count = False
    actions = ["recompute"]

    @admin.action(description="Recompute the desired configuration", permissions=["view"])
    def recompute(self, request: HttpRequest, queryset: QuerySet[DeviceConfigurationState]) -> None:
        device_ids = list(queryset.values_list("device_id", flat=True))
        actor = request_actor(request)
        with transaction.atomic():
            result = services.recompute(device_ids=device_ids, actor=actor)
            audit.record(
                actor=actor,
                action="configuration.recompute",
                object_type="configuration.deviceconfigurationstate",
                object_id=f"{len(device_ids)} devices",
                object_repr=f"{len(device_ids)} devices",
                changes={"changed": result.changed, "unchanged": result.unchanged},
            )
        self.message_user(
            request,
            f"{result.changed} new versions, {result.unchanged} unchanged, "
            f"{len(result.refused)} invalid.",
            messages.WARNING if result.refused else messages.SUCCESS,
        )
