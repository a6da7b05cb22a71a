"""Portal pages of provisioning templates, under the profile catalog (namespace ``profiles``):
the templates of an organization's subtree, a preview of what a device of a profile would get
there, and the editor. Writes go through ``apps.profiles.provisioning``."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.forms import PORTAL_INPUT, PortalForm, apply_service_error
from apps.accounts.models import Organization
from apps.accounts.portal import organization_for, set_current_organization
from apps.core.actors import Actor
from apps.core.scoping import organization_ids_under

from . import provisioning, selectors
from .models import ProvisioningTemplate

CODE = {"class": "input", "rows": 6, "spellcheck": "false"}


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


class TemplateForm(PortalForm):
    name = forms.CharField(max_length=200, widget=forms.TextInput(attrs=PORTAL_INPUT))
    profile = forms.ChoiceField(
        required=False,
        widget=forms.Select(attrs=PORTAL_INPUT),
        help_text="Empty: applies to every profile in the organization.",
    )
    configuration = forms.CharField(
        label="Initial configuration (JSON)", required=False, widget=forms.Textarea(attrs=CODE)
    )
    heartbeat_interval_seconds = forms.IntegerField(
        label="Heartbeat interval (seconds)",
        required=False,
        widget=forms.NumberInput(attrs=PORTAL_INPUT),
        help_text="Empty: keep what the profile (or a template above) says.",
    )
    heartbeat_missed_beats = forms.IntegerField(
        label="Missed beats before offline",
        required=False,
        widget=forms.NumberInput(attrs=PORTAL_INPUT),
    )
    routing_labels = forms.CharField(
        label="Data-routing labels",
        required=False,
        widget=forms.TextInput(attrs=PORTAL_INPUT),
        help_text="Comma-separated, e.g. eu, retail.",
    )
    software = forms.CharField(
        label="Software baseline (JSON)",
        required=False,
        widget=forms.Textarea(attrs=CODE),
        help_text='Component to version, e.g. {"firmware": "1.4.2"}.',
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def limit(self, actor: Actor, organization: Organization) -> None:
        profiles = selectors.profile_catalog(actor=actor, organization=organization)[:200]
        self._profiles = {str(profile.pk): profile for profile in profiles}
        self.fields["profile"].choices = [("", "Every profile")] + [  # type: ignore[attr-defined]
            (pk, profile.name) for pk, profile in self._profiles.items()
        ]

    @classmethod
    def initial_for(cls, template: ProvisioningTemplate) -> dict[str, Any]:
        return {
            "name": template.name,
            "profile": str(template.profile_id) if template.profile_id else "",
            "configuration": json.dumps(template.configuration, indent=2),
            "heartbeat_interval_seconds": template.heartbeat_interval_seconds,
            "heartbeat_missed_beats": template.heartbeat_missed_beats,
            "routing_labels": ", ".join(template.routing_labels),
            "software": json.dumps(template.software, indent=2),
            "enabled": template.enabled,
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in ("configuration", "software"):
            text = cleaned.get(name) or "{}"
            try:
                cleaned[name] = json.loads(text)
            except ValueError as error:
                self.add_error(name, ValidationError(f"Not valid JSON: {error}"))
        labels = cleaned.get("routing_labels") or ""
        cleaned["routing_labels"] = [part.strip() for part in labels.split(",") if part.strip()]
        return cleaned

    def service_fields(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["profile"] = self._profiles.get(data["profile"]) if data["profile"] else None
        return data


def _preview(request: HttpRequest, organization: Organization) -> dict[str, Any] | None:
    wanted = _uuid(request.GET.get("profile", ""))
    if wanted is None:
        return None
    catalog = selectors.profile_catalog(actor=_actor(request), organization=organization)
    profile = catalog.filter(pk=wanted).first()
    if profile is None:
        return None
    try:
        result = provisioning.provisioning_preview(organization=organization, profile=profile)
    except ValidationError:
        return {"profile": profile, "refused": True}
    return {
        "profile": profile,
        "result": result,
        "configuration_json": json.dumps(result["configuration"], indent=2),
    }


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


@login_required
def template_list(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "provisioningtemplate.view")
    templates = (
        ProvisioningTemplate.objects.for_actor(actor, "view")
        .filter(organization__in=organization_ids_under([organization.path]))
        .select_related("organization", "profile")
        .order_by("organization__path", "name")
    )
    context = {
        "organization": organization,
        "templates": templates,
        "profiles": selectors.profile_catalog(actor=actor, organization=organization)[:200],
        "preview": _preview(request, organization),
        "can_add": actor.has_perm("provisioningtemplate.add", organization.path),
    }
    return render(request, "profiles/provisioning_list.html", context)


def _form_page(
    request: HttpRequest, form: TemplateForm, organization: Organization, template: Any
) -> HttpResponse:
    context = {"organization": organization, "form": form, "template": template}
    status = 400 if form.errors else 200
    return render(request, "profiles/provisioning_form.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def template_create(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "provisioningtemplate.add")
    form = TemplateForm(request.POST or None, initial={"enabled": True})
    form.limit(actor, organization)
    if request.method == "POST" and form.is_valid():
        try:
            template = provisioning.template_create(
                actor=actor, organization=organization, **form.service_fields()
            )
        except ValidationError as error:
            apply_service_error(form, error)
        else:
            messages.success(request, f"Provisioning template {template.name} created.")
            return redirect("profiles:provisioning", organization_id=organization.pk)
    return _form_page(request, form, organization, None)


def _template_for(
    request: HttpRequest, template_id: uuid.UUID, action: str
) -> ProvisioningTemplate:
    actor = _actor(request)
    visible = ProvisioningTemplate.objects.for_actor(actor, "view").select_related("organization")
    template: ProvisioningTemplate = get_object_or_404(visible, pk=template_id)
    if not actor.has_perm(f"provisioningtemplate.{action}", template.organization.path):
        raise PermissionDenied
    set_current_organization(request, template.organization)
    return template


@login_required
@require_http_methods(["GET", "POST"])
def template_edit(request: HttpRequest, template_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    template = _template_for(request, template_id, "change")
    form = TemplateForm(request.POST or None, initial=TemplateForm.initial_for(template))
    form.limit(actor, template.organization)
    if request.method == "POST" and form.is_valid():
        try:
            provisioning.template_update(actor=actor, template=template, **form.service_fields())
        except ValidationError as error:
            apply_service_error(form, error)
        else:
            messages.success(request, f"{form.cleaned_data['name']} saved.")
            return redirect("profiles:provisioning", organization_id=template.organization_id)
    return _form_page(request, form, template.organization, template)


@login_required
@require_POST
def template_delete(request: HttpRequest, template_id: uuid.UUID) -> HttpResponse:
    template = _template_for(request, template_id, "delete")
    organization_id = template.organization_id
    provisioning.template_delete(actor=_actor(request), template=template)
    messages.success(request, f"{template.name} deleted. Devices keep what they were given.")
    return redirect("profiles:provisioning", organization_id=organization_id)
