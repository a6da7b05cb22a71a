"""Portal device detail: identity, lifecycle buttons, attributes, location map, inventory,
groups, replacement links and the timeline (keyset "older" pages)."""

from __future__ import annotations

import datetime
import uuid
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from apps.accounts.models import Organization
from apps.accounts.portal import organization_for
from apps.telemetry.views_wellness import device_wellness

from . import lifecycle, selectors
from .choices import GroupKind
from .models import Device, DeviceGroup
from .selection import selection_q
from .views_fleet import actor_of, devices_under, live_labels

TIMELINE_PAGE = 20
DYNAMIC_GROUPS_LIMIT = 100


def _device_for(request: HttpRequest, organization: Organization, device_id: uuid.UUID) -> Device:
    device = (
        devices_under(actor_of(request), organization)
        .select_related(
            "organization", "manufacturer", "site", "profile_version__profile", "replaced_by"
        )
        .filter(pk=device_id)
        .first()
    )
    if device is None:
        raise Http404("No such device.")
    return device


def allowed_transitions(actor: Any, device: Device) -> list[dict[str, str]]:
    """Transitions the lifecycle allows from the device's state and the actor's role permits."""
    return [
        {"name": name, "label": name.replace("_", " ").capitalize(), "target": transition.target}
        for name, transition in lifecycle.TRANSITIONS.items()
        if device.state in transition.sources
        and actor.has_perm(transition.permission, device.organization.path)
    ]


def _profile_url(device: Device, organization: Organization) -> str:
    profile = device.profile_version.profile
    for kwargs in (
        {"organization_id": organization.pk, "profile_id": profile.pk},
        {"profile_id": profile.pk},
    ):
        try:
            return reverse("profiles:detail", kwargs=kwargs)
        except NoReverseMatch:
            continue
    return ""


def device_groups(actor: Any, device: Device) -> list[DeviceGroup]:
    """Static groups holding the device and dynamic groups whose filter matches it: two queries
    (the dynamic filters are evaluated together in one aggregate)."""
    visible = DeviceGroup.objects.for_actor(actor, "view")
    static = list(visible.filter(kind=GroupKind.STATIC, memberships__device=device))
    dynamic = list(
        visible.filter(kind=GroupKind.DYNAMIC)
        .select_related("organization")
        .order_by("name")[:DYNAMIC_GROUPS_LIMIT]
    )
    matches: dict[str, Q] = {}
    for group in dynamic:
        try:
            matches[f"g{group.pk.hex}"] = selection_q(group.filter, parents=(group.pk,))
        except ValidationError:
            continue
    if matches:
        path = device.organization.path
        counts = Device.objects.filter(pk=device.pk).aggregate(
            **{key: Count("pk", filter=condition) for key, condition in matches.items()}
        )
        dynamic = [
            group
            for group in dynamic
            if counts.get(f"g{group.pk.hex}") and path.startswith(group.organization.path)
        ]
    else:
        dynamic = []
    return sorted(static + dynamic, key=lambda group: group.name)


def _timeline(
    actor: Any, device: Device, before: tuple[datetime.datetime | None, uuid.UUID | None]
) -> list[Any]:
    """The device's timeline (and its replacement chain's), newest first."""
    return selectors.device_timeline(
        actor=actor, device=device, before=before[0], before_id=before[1], limit=TIMELINE_PAGE
    )


def _before(request: HttpRequest) -> tuple[datetime.datetime | None, uuid.UUID | None]:
    """The ``(time, id)`` keyset position of an older page; ``(None, None)`` for the first."""
    value, entry_id = request.GET.get("before", ""), request.GET.get("before_id", "")
    try:
        time = parse_datetime(value) if value else None
        return time, uuid.UUID(entry_id) if time and entry_id else None
    except ValueError:
        return None, None


def _context(request: HttpRequest, organization: Organization, device: Device) -> dict[str, Any]:
    actor = actor_of(request)
    before = _before(request)
    entries = _timeline(actor, device, before)
    older = ""
    if len(entries) == TIMELINE_PAGE:
        last = entries[-1]
        older = "?" + urlencode({"before": last.time.isoformat(), "before_id": str(last.id)})
    return {
        "organization": organization,
        "device": device,
        "transitions": allowed_transitions(actor, device),
        "profile_url": _profile_url(device, organization),
        "attributes": sorted(device.attributes.items()),
        "inventory": sorted(device.inventory.items()),
        "groups": device_groups(actor, device),
        "replaces": list(devices_under(actor, organization).filter(replaced_by=device)),
        "timeline": entries,
        "older_url": older,
        "is_older_page": before[0] is not None,
        "map_tiles": getattr(settings, "FLEET_MAP_TILE_URL", ""),
        "live_labels": live_labels(),
        "credentials": _credentials(actor, device),
        "wellness": device_wellness(device),
    }


def _credentials(actor: Any, device: Device) -> dict[str, Any]:
    from .views_pki import credentials_context  # views_pki imports this module

    return credentials_context(actor, device)


@login_required
def device_detail(
    request: HttpRequest, organization_id: uuid.UUID, device_id: uuid.UUID
) -> HttpResponse:
    organization = organization_for(request, organization_id, "device.view")
    device = _device_for(request, organization, device_id)
    context = _context(request, organization, device)
    if request.headers.get("HX-Request") and context["is_older_page"]:
        return render(request, "devices/device_timeline_rows.html", context)
    return render(request, "devices/device_detail.html", context)


@login_required
@require_POST
def device_transition(
    request: HttpRequest, organization_id: uuid.UUID, device_id: uuid.UUID
) -> HttpResponse:
    """Run one lifecycle transition (``services.device_transition``)."""
    from . import services

    actor = actor_of(request)
    organization = organization_for(request, organization_id, "device.view")
    device = _device_for(request, organization, device_id)
    name = request.POST.get("transition", "")
    transition = lifecycle.TRANSITIONS.get(name)
    if transition is not None and not actor.has_perm(
        transition.permission, device.organization.path
    ):
        raise PermissionDenied
    try:
        device = services.device_transition(actor=actor, device=device, transition=name)
    except ValidationError as invalid:
        messages.error(request, f"{device.serial}: {' '.join(invalid.messages)}")
    else:
        messages.success(request, f"{device.serial} is now {device.get_state_display()}.")
    return redirect("fleet:device", organization_id=organization.pk, device_id=device.pk)
