"""Portal fleet list: filters, sort, keyset pages, per-state counts and bulk transitions.

Every page names its organization in the URL (``/o/<id>/devices/...``) and shows the devices of
that organization's subtree that the actor may view (``Device.objects.for_actor``). Outside the
actor's view is 404; visible without the action's permission is 403. Writes go through the
devices services with ``actor=request.actor``.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_POST

from apps.accounts.models import Organization
from apps.accounts.portal import organization_for, require_perm
from apps.core.scoping import organization_ids_under
from apps.profiles.models import DeviceProfile
from apps.telemetry.views_wellness import annotate_wellness

from .choices import Connectivity, DeviceState
from .models import Device
from .selection import selection_q
from .views_fleet_forms import BULK_TARGETS, BulkTransitionForm, FleetFilterForm
from .views_fleet_keyset import keyset_page

PAGE_SIZE = 50
PROFILE_CHOICES_LIMIT = 200
FILTER_KEYS = ("search", "state", "connectivity", "health", "profile", "tags", "firmware", "sort")


def actor_of(request: HttpRequest) -> Any:
    return request.actor  # type: ignore[attr-defined]


def live_labels() -> dict[str, dict[str, str]]:
    """Labels fleet.js shows when a live message changes a badge."""
    return {
        "state": {value: str(label) for value, label in DeviceState.choices},
        "connectivity": {value: str(label) for value, label in Connectivity.choices},
    }


def devices_under(actor: Any, organization: Organization) -> QuerySet[Device]:
    """Devices of ``organization``'s subtree that ``actor`` may view."""
    return Device.objects.for_actor(actor, "view").filter(
        organization__in=organization_ids_under([organization.path])
    )


def state_counts(actor: Any, organization: Organization) -> list[dict[str, Any]]:
    """Devices per lifecycle state in the subtree: one GROUP BY, never a COUNT over rows shown."""
    counted = dict(
        devices_under(actor, organization)
        .order_by()
        .values_list("state")
        .annotate(total=Count("id"))
        .values_list("state", "total")
    )
    return [
        {"value": value, "label": label, "total": counted.get(value, 0)}
        for value, label in DeviceState.choices
    ]


def _filter_query(form: FleetFilterForm, **extra: str) -> str:
    data = form.cleaned_data if form.is_valid() else {}
    params = {key: data[key] for key in FILTER_KEYS if data.get(key)}
    params.update({key: value for key, value in extra.items() if value})
    return urlencode(params)


def _export_url(form: FleetFilterForm, organization: Organization) -> str:
    """The CSV export of what the list shows: its selection, in the organization's subtree."""
    spec: dict[str, Any] = form.selection() if form.is_bound and form.is_valid() else {}
    params = {"organization": str(organization.pk)}
    for key, value in spec.items():
        params[key] = value if isinstance(value, str) else ",".join(value)
    return "/api/v1/device-exports/devices.csv?" + urlencode(params)


def _job_url(job_id: Any) -> str:
    """The imports pages' job page, when they have one that shows any job."""
    try:
        return reverse("imports:job", kwargs={"job_id": job_id})
    except NoReverseMatch:
        return ""


def _list_context(request: HttpRequest, organization: Organization) -> dict[str, Any]:
    actor = actor_of(request)
    profiles = list(
        DeviceProfile.objects.for_actor(actor, "view")
        .order_by("name")
        .only("id", "name")[:PROFILE_CHOICES_LIMIT]
    )
    form = FleetFilterForm(request.GET or None, profiles=profiles)
    queryset = devices_under(actor, organization).select_related("profile_version__profile")
    error = ""
    if form.is_bound and form.is_valid():
        try:
            queryset = queryset.filter(selection_q(form.selection()))
        except ValidationError as invalid:
            error, queryset = " ".join(invalid.messages), queryset.none()
    elif form.is_bound:
        queryset = queryset.none()
    sort = form.sort_key() if form.is_bound and form.is_valid() else "newest"
    health = form.cleaned_data.get("health", "") if form.is_bound and form.is_valid() else ""
    queryset = annotate_wellness(queryset, health=health)  # the health column (and filter)
    page = keyset_page(queryset, sort=sort, cursor=request.GET.get("cursor", ""), size=PAGE_SIZE)
    return {
        "organization": organization,
        "form": form,
        "error": error,
        "devices": page.rows,
        "next_url": f"?{_filter_query(form, cursor=page.next_cursor or '')}"
        if page.next_cursor
        else "",
        "prev_url": f"?{_filter_query(form, cursor=page.prev_cursor or '')}"
        if page.prev_cursor
        else "",
        "state_counts": state_counts(actor, organization),
        "current_state": form.cleaned_data.get("state", "") if form.is_bound else "",
        "filter_query": _filter_query(form),
        "export_url": _export_url(form, organization),
        "can_transition": actor.has_perm("device.transition", organization.path),
        "bulk_targets": BULK_TARGETS,
        "live_labels": live_labels(),
    }


@login_required
def fleet_list(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    organization = organization_for(request, organization_id, "device.view")
    context = _list_context(request, organization) | fleet_job_context(request)
    return render(request, "devices/fleet_list.html", context)


@login_required
@require_POST
def fleet_bulk_transition(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    """Move the selected devices to one state as one job (``device_bulk_transition``)."""
    from . import services

    actor = actor_of(request)
    organization = organization_for(request, organization_id, "device.view")
    require_perm(actor, "device.transition", organization)
    back = reverse("fleet:list", kwargs={"organization_id": organization.pk})
    query = request.POST.get("return_query", "")
    form = BulkTransitionForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(str(error) for error in errors))
        return redirect(f"{back}?{query}" if query else back)
    try:
        job = services.device_bulk_transition(
            actor=actor,
            organization=organization,
            selection={"ids": form.cleaned_data["devices"]},
            transition=form.cleaned_data["transition"],
        )
    except ValidationError as invalid:
        messages.error(request, " ".join(invalid.messages))
        return redirect(f"{back}?{query}" if query else back)
    label = dict(BULK_TARGETS)[form.cleaned_data["transition"]]
    messages.success(request, f"{label}: a job for {len(form.cleaned_data['devices'])} devices.")
    return redirect(f"{back}?{urlencode({'job': str(job.pk)})}")


def fleet_job_context(request: HttpRequest) -> dict[str, Any]:
    """The job just started from this page, for a progress panel (a link when the imports pages
    have a job page)."""
    from apps.core.models import Job

    job_id = request.GET.get("job", "")
    try:
        job = Job.objects.for_actor(actor_of(request), "view").filter(pk=uuid.UUID(job_id)).first()
    except ValueError:
        job = None
    if job is None:
        return {}
    return {"job": job, "job_url": _job_url(job.pk)}
