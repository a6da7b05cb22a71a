"""Portal pages of the device catalog: the catalog, a profile's detail and the editor.

A page names its organization (``/o/<id>/profiles/``) or reaches a profile by id through
``for_actor``: outside the actor's view is 404; visible without the permission is 403. A
manufacturer's profiles shared down the tree are listed for its customers, read-only.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from apps.accounts.forms import apply_service_error
from apps.accounts.portal import organization_for, set_current_organization
from apps.core.actors import Actor
from apps.devices.models import Device

from . import selectors, services
from .forms import ProfileForm
from .models import DeviceProfile, ProfileVersion


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


def _marks(actor: Actor, profile: DeviceProfile) -> dict[str, Any]:
    """Shared: visible only because an organization above shares it. Editable: change held."""
    path = profile.organization.path
    return {
        "profile": profile,
        "version": selectors.latest_version(profile),
        "shared": not actor.has_perm("profile.view", path),
        "can_edit": actor.has_perm("profile.change", path),
    }


@login_required
def profile_list(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "profile.view")
    profiles = selectors.profile_catalog(actor=actor, organization=organization)
    context = {
        "organization": organization,
        "rows": [_marks(actor, profile) for profile in profiles],
        "can_add": actor.has_perm("profile.add", organization.path),
    }
    return render(request, "profiles/list.html", context)


def _visible_profile(request: HttpRequest, profile_id: uuid.UUID) -> DeviceProfile:
    profiles = selectors.profile_list(actor=_actor(request))
    return get_object_or_404(profiles, pk=profile_id)


@login_required
def profile_detail(request: HttpRequest, profile_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    profile = _visible_profile(request, profile_id)
    in_use = Device.objects.filter(profile_version=OuterRef("pk"))
    versions = list(
        selectors.version_list(actor=actor, profile=profile).annotate(in_use=Exists(in_use))
    )
    shown = versions[0] if versions else selectors.latest_version(profile)
    wanted = request.GET.get("version", "")
    if wanted.isdigit():
        shown = next((v for v in versions if v.number == int(wanted)), None) or shown
    context = {
        **_marks(actor, profile),
        "version": shown,
        "versions": versions,
        "metrics": shown.telemetry_schema.get("metrics", []),
        "commands": _commands(shown),
        "offline_after": shown.heartbeat_interval_seconds * shown.heartbeat_missed_beats,
    }
    return render(request, "profiles/detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def profile_create(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "profile.add")
    form = ProfileForm(request.POST or None, initial=ProfileForm.defaults())
    if request.method == "POST" and form.is_valid():
        try:
            profile = services.profile_create(
                actor=actor, organization=organization, **form.service_fields()
            )
        except ValidationError as error:
            apply_service_error(form, error)
        else:
            messages.success(request, f"{profile.name} created.")
            return redirect("profiles:detail", profile_id=profile.pk)
    context = {"organization": organization, "form": form, "profile": None}
    return render(request, "profiles/form.html", context, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def profile_edit(request: HttpRequest, profile_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    profile = _visible_profile(request, profile_id)
    if not actor.has_perm("profile.change", profile.organization.path):
        raise PermissionDenied
    set_current_organization(request, profile.organization)
    latest = selectors.latest_version(profile)
    form = ProfileForm(request.POST or None, initial=ProfileForm.initial_for(profile, latest))
    if request.method == "POST" and form.is_valid():
        try:
            version = services.profile_update(actor=actor, profile=profile, **form.service_fields())
        except ValidationError as error:
            apply_service_error(form, error)
        else:
            profile.refresh_from_db(fields=["name"])
            messages.success(request, _saved_message(profile, latest, version))
            return redirect("profiles:detail", profile_id=profile.pk)
    context = {"organization": profile.organization, "form": form, "profile": profile}
    return render(request, "profiles/form.html", context, status=400 if form.errors else 200)


def _commands(version: ProfileVersion) -> list[dict[str, Any]]:
    return [
        {**command, "schema_json": json.dumps(command.get("schema", {}), indent=2)}
        for command in version.command_catalog
    ]


def _saved_message(profile: DeviceProfile, before: ProfileVersion, after: ProfileVersion) -> str:
    if after.number != before.number:
        return (
            f"Version {before.number} is in use, so the changes were saved as version "
            f"{after.number}. Devices move to it only when you upgrade them."
        )
    return f"{profile.name} saved."
