"""Back office for the fleet registry, usable at a million devices.

No full counts (``show_full_result_count = False``), raw-id widgets for every foreign key,
filters only on indexed columns and search by exact id or serial-number prefix (an index range
scan, never ``ILIKE '%...%'`` over the fleet). Rows are read here; state changes go through the
lifecycle services (audited) from the admin actions. Non-superusers see only what
``for_actor`` gives them.

"Import devices" (a button on the device list) starts the same import job as the API and the
portal (``imports.import_start``) and leads to the job's page, which shows its progress.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html, format_html_join

from apps.accounts.admin import ReadMostlyAdmin, request_actor
from apps.accounts.models import Organization
from apps.core.actors import Actor
from apps.core.models import Job, JobItem

from . import imports, lifecycle, services
from .choices import AuthorityKind, CredentialStatus
from .models import Device, DeviceGroup, Transfer
from .models_pki import CertificateAuthority, DeviceCertificate, DeviceToken
from .pki import external
from .pki import services as pki_services

MAX_ACTION_DEVICES = 500  # larger selections: the API's bulk transition (a background job)
ITEMS_SHOWN = 50


class ImportForm(forms.Form):
    organization = forms.ModelChoiceField(
        queryset=Organization.objects.none(), help_text="The devices land in this organization."
    )
    file = forms.FileField(
        label="CSV or JSON file",
        help_text="The same format as the API and the portal: serial, profile, profile_version, "
        "name, tags, attributes or attr.<name>, latitude, longitude, state.",
    )

    def __init__(
        self, *args: Any, organizations: QuerySet[Any], widget: Any, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["organization"]
        field.queryset = organizations  # type: ignore[attr-defined]
        field.widget = widget


@admin.register(Device)
class DeviceAdmin(ReadMostlyAdmin):
    list_display = ("serial", "name", "state", "connectivity", "organization", "last_seen_at")
    list_filter = ("state", "connectivity")
    search_fields = ("serial",)
    search_help_text = "An exact device id, or the beginning of a serial number."
    list_select_related = ("organization",)
    raw_id_fields = ("organization", "manufacturer", "profile_version", "site", "replaced_by")
    readonly_fields = ("id", "claim_code_hash", "state_changed_at", "created_at", "updated_at")
    show_full_result_count = False
    ordering = ("-id",)
    list_per_page = 50
    actions = ("enter_maintenance", "activate", "suspend", "decommission")

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.import_view)  # staff only, else the login page
        return [path("import/", view, name="devices_device_import"), *super().get_urls()]

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload a file of devices into an organization where the admin may add devices."""
        actor = request_actor(request)
        if not actor.has_any("device.add"):
            raise PermissionDenied
        rel = Device._meta.get_field("organization").remote_field
        posted = request.method == "POST"
        form = ImportForm(
            request.POST if posted else None,
            request.FILES if posted else None,
            organizations=Organization.objects.for_actor(actor, "view"),
            widget=ForeignKeyRawIdWidget(rel, self.admin_site),
        )
        if posted and form.is_valid():
            organization = form.cleaned_data["organization"]
            if not actor.has_perm("device.add", organization.path):
                raise PermissionDenied
            try:
                job = imports.import_start(
                    actor=actor, organization=organization, upload=form.cleaned_data["file"]
                )
            except ValidationError as error:
                form.add_error("file", error.message_dict.get("file", error.messages))
            else:
                self.message_user(request, f"Import of {job.params['file_name']} queued.")
                return redirect("admin:core_job_change", job.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import devices",
            "form": form,
            "media": self.media + form.media,
        }
        status = 400 if form.errors else 200
        return TemplateResponse(request, "admin/devices/device/import.html", context, status=status)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(serial__startswith=term), False

    def _run(self, request: HttpRequest, queryset: QuerySet[Any], name: str) -> None:
        spec = lifecycle.get(name)
        selected = self.allowed(request, queryset, spec.action)
        devices = list(selected.order_by("pk")[: MAX_ACTION_DEVICES + 1])
        if len(devices) > MAX_ACTION_DEVICES:
            self.message_user(
                request,
                f"Select at most {MAX_ACTION_DEVICES} devices here; use a bulk transition job.",
                messages.ERROR,
            )
            return
        moved, refused = 0, []
        for device in devices:
            try:
                services.device_transition(
                    actor=request_actor(request), device=device, transition=name
                )
                moved += 1
            except ValidationError as error:
                refused.append(f"{device.serial}: {' '.join(error.messages)}")
        self.message_user(request, f"{name}: {moved} device(s) moved.", messages.SUCCESS)
        if refused:
            self.message_user(request, "Refused: " + "; ".join(refused[:20]), messages.WARNING)

    @admin.action(description="Enter maintenance")
    def enter_maintenance(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, "enter_maintenance")

    @admin.action(description="Activate")
    def activate(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, "activate")

    @admin.action(description="Suspend")
    def suspend(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, "suspend")

    @admin.action(description="Decommission (revokes credentials)")
    def decommission(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, "decommission")


@admin.register(DeviceGroup)
class DeviceGroupAdmin(ReadMostlyAdmin):
    list_display = ("name", "kind", "organization", "created_at")
    list_filter = ("kind",)
    search_fields = ("^name",)
    list_select_related = ("organization",)
    raw_id_fields = ("organization",)
    show_full_result_count = False


@admin.register(Transfer)
class TransferAdmin(ReadMostlyAdmin):
    list_display = ("device", "from_organization", "to_organization", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("=device__id",)
    list_select_related = ("device", "from_organization", "to_organization")
    raw_id_fields = ("device", "from_organization", "to_organization", "created_by", "decided_by")
    show_full_result_count = False


@admin.register(Job)
class JobAdmin(ReadMostlyAdmin):
    list_display = ("kind", "status", "processed", "total", "failed", "organization", "created_at")
    list_filter = ("kind", "status")
    list_select_related = ("organization",)
    raw_id_fields = ("organization", "created_by")
    readonly_fields = ("progress", "rejected_rows", "failed_items")
    show_full_result_count = False

    @admin.display(description="Progress")
    def progress(self, job: Job) -> str:
        return f"{job.status}: {job.processed} / {job.total} ({job.percent}%), {job.failed} failed"

    @admin.display(description="Rejected rows")
    def rejected_rows(self, job: Job) -> str:
        if job.kind != imports.KIND:
            return "-"
        url = reverse("v1:device-import-rejected", kwargs={"pk": job.pk})
        return format_html('{} (<a href="{}">rejected rows as CSV</a>)', job.failed, url)

    @admin.display(description=f"First {ITEMS_SHOWN} failed items")
    def failed_items(self, job: Job) -> str:
        items = JobItem.objects.filter(job=job, ok=False).order_by("id")[:ITEMS_SHOWN]
        return format_html_join("", "<div>{}: {}</div>", ((i.key, i.message) for i in items))


# --- PKI: certificate authorities, device certificates, device tokens --------------------------
# No private key material is shown: CA keys (``key_encrypted``) and token hashes are excluded.


@admin.register(CertificateAuthority)
class CertificateAuthorityAdmin(ReadMostlyAdmin):
    list_display = ("name", "kind", "organization", "verified_at", "not_after", "revoked_at")
    list_filter = ("kind",)
    search_fields = ("=fingerprint", "^name")
    search_help_text = "An exact SHA-256 fingerprint, or the beginning of a name."
    list_select_related = ("organization",)
    raw_id_fields = ("organization", "parent")
    exclude = ("key_encrypted",)
    show_full_result_count = False
    actions = ("revoke_authority",)

    @admin.action(description="Revoke selected registered CAs", permissions=["view"])
    def revoke_authority(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        def write(actor: Actor, authority: CertificateAuthority) -> bool:
            if authority.kind != AuthorityKind.EXTERNAL or authority.revoked_at is not None:
                return False
            external.authority_revoke(actor=actor, authority=authority, reason="admin")
            return True

        self.apply(request, queryset, action="delete", verb="Revoked", write=write)


@admin.register(DeviceCertificate)
class DeviceCertificateAdmin(ReadMostlyAdmin):
    list_display = ("serial_number", "device", "kind", "status", "not_after", "last_seen_at")
    list_filter = ("status", "kind")
    search_fields = ("=fingerprint", "=serial_number", "=device__id")
    search_help_text = "An exact fingerprint, serial number (hex) or device id."
    list_select_related = ("device", "issuer")
    raw_id_fields = ("device", "issuer")
    show_full_result_count = False
    ordering = ("-id",)
    actions = ("revoke_certificate",)

    @admin.action(description="Revoke selected certificates", permissions=["view"])
    def revoke_certificate(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        def write(actor: Actor, certificate: DeviceCertificate) -> bool:
            if certificate.status == CredentialStatus.REVOKED:
                return False
            pki_services.certificate_revoke(
                actor=actor, certificate=certificate, reason="unspecified"
            )
            return True

        self.apply(request, queryset, action="delete", verb="Revoked", write=write)


@admin.register(DeviceToken)
class DeviceTokenAdmin(ReadMostlyAdmin):
    list_display = ("prefix", "device", "label", "expires_at", "revoked_at", "last_used_at")
    search_fields = ("=prefix", "=device__id")
    search_help_text = "An exact token prefix or device id."
    list_select_related = ("device",)
    raw_id_fields = ("device", "created_by")
    exclude = ("token_hash", "broker_hash")  # never shown, not even hashed
    show_full_result_count = False
    ordering = ("-id",)
    actions = ("revoke_token",)

    @admin.action(description="Revoke selected device tokens", permissions=["view"])
    def revoke_token(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        def write(actor: Actor, token: DeviceToken) -> bool:
            if token.revoked_at is not None:
                return False
            pki_services.device_token_revoke(actor=actor, token=token)
            return True

        self.apply(request, queryset, action="delete", verb="Revoked", write=write)
