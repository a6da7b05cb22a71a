"""Portal pages of configuration management (namespace ``configuration``).

- ``o/<organization>/configuration/``: fleet-wide sync counts and per-device states.
- ``configuration/devices/<device>/``: a device's desired and reported state, its effective
  configuration now, its history with diffs; proposes a device change or a rollback (both are
  change requests, shown on the change request's page).
- ``configuration/devices/<device>/panel/``: the device page's panel (htmx).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from apps.accounts.portal import organization_for
from apps.changes import services as change_services
from apps.core.actors import Actor
from apps.core.scoping import organization_ids_under
from apps.devices.models import Device

from . import documents, selectors
from .forms import DeviceChangeForm, StatusFilterForm
from .models import DeviceConfigurationState, GroupConfiguration, OrganizationConfiguration

PAGE_SIZE = 50
HISTORY = 20
LAYERS = 100
REQUEST_LIFETIME = timedelta(days=7)


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


@login_required
def overview(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "configuration.view")
    form = StatusFilterForm(request.GET or None)
    status = form.cleaned_data["status"] if form.is_valid() else ""
    within = organization_ids_under([organization.path])
    states = selectors.state_list(actor=actor, status=status).filter(organization__in=within)
    before = request.GET.get("before", "")
    if before:
        with contextlib.suppress(ValueError):
            states = states.filter(device_id__lt=uuid.UUID(before))
    rows = list(states.order_by("-device_id")[: PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    query = {key: value for key, value in request.GET.items() if key != "before"}
    context = {
        "organization": organization,
        "form": form,
        "rows": rows,
        "counts": _counts(actor, within),
        "layers": _layers(actor, within),
        "next_url": f"?{urlencode({**query, 'before': rows[-1].device_id})}" if more else "",
    }
    return render(request, "configuration/overview.html", context)


def _counts(actor: Actor, within: Any) -> dict[str, int]:
    visible = DeviceConfigurationState.objects.for_actor(actor, "view").filter(
        organization__in=within
    )
    counts = dict.fromkeys(("in_sync", "pending", "drifted", "error"), 0)
    rows = visible.order_by().values_list("status").annotate(count=Count("pk"))
    counts.update(dict(rows))
    return counts


def _layers(actor: Actor, within: Any) -> list[dict[str, Any]]:
    """The organization and group layers below the page's organization, for reading."""
    rows: list[dict[str, Any]] = [
        {
            "kind": "organization",
            "name": layer.organization.name,
            "priority": None,
            "values": _text(layer.values),
            "variables": _text(layer.variables),
        }
        for layer in OrganizationConfiguration.objects.for_actor(actor, "view")
        .filter(organization__in=within)
        .select_related("organization")
        .order_by("organization__path")[:LAYERS]
    ]
    rows.extend(
        {
            "kind": "group",
            "name": layer.group.name,
            "priority": layer.priority,
            "values": _text(layer.values),
            "variables": _text(layer.variables),
        }
        for layer in GroupConfiguration.objects.for_actor(actor, "view")
        .filter(organization__in=within)
        .select_related("group")
        .order_by("priority", "group__name")[:LAYERS]
    )
    return rows


def _history(device: Device) -> list[dict[str, Any]]:
    """The newest versions, each with its diff from the one before."""
    versions = list(selectors.version_list(device=device)[: HISTORY + 1])
    rows = []
    for index, version in enumerate(versions[:HISTORY]):
        previous = versions[index + 1].document if index + 1 < len(versions) else {}
        diff = [
            {**change, "from": _text(change["from"]), "to": _text(change["to"])}
            for change in documents.diff(previous, version.document)
        ]
        rows.append({"version": version, "diff": diff})
    return rows


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


@login_required
@require_http_methods(["GET", "POST"])
def device_page(request: HttpRequest, device_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    device = selectors.access_device(actor=actor, device_id=device_id)
    form = DeviceChangeForm(request.POST if request.POST.get("action") == "change" else None)
    if request.method == "POST":
        created = _propose(request, actor, device, form)
        if created is not None:
            return redirect("changes:detail", request_id=created)
    state = DeviceConfigurationState.objects.filter(device=device).first()
    effective = selectors.effective_now(device=device)
    context = {
        "device": device,
        "organization": device.organization,
        "state": state,
        "effective": effective,
        "effective_json": json.dumps(effective.document, indent=2, sort_keys=True),
        "history": _history(device),
        "form": form,
        "may_propose": actor.has_perm("changerequest.add", device.organization.path),
    }
    return render(
        request,
        "configuration/device.html",
        context,
        status=400 if request.method == "POST" else 200,
    )


def _propose(
    request: HttpRequest, actor: Actor, device: Device, form: DeviceChangeForm
) -> uuid.UUID | None:
    """Create the change request the form asks for; None (with messages) when refused."""
    if not actor.has_perm("changerequest.add", device.organization.path):
        raise PermissionDenied
    if request.POST.get("action") == "rollback":
        number = request.POST.get("version", "")
        spec = {
            "operation": "rollback",
            "device": str(device.pk),
            "version": int(number) if number.isdigit() else -1,
        }
        title = f"Roll {device.serial} back to configuration v{number}"
    elif form.is_valid():
        spec = {
            "operation": "set",
            "layer": "device",
            "layer_id": str(device.pk),
            "values": form.cleaned_data["values"],
            "unset": form.paths(),
        }
        title = form.cleaned_data["title"]
    else:
        return None
    try:
        created = change_services.change_request_create(
            actor=actor,
            organization=device.organization,
            kind="configuration",
            title=title,
            spec=spec,
            target={"device": str(device.pk)},
            expires_at=timezone.now() + REQUEST_LIFETIME,
        )
    except ValidationError as error:
        for field, problems in error.message_dict.items():
            for problem in problems:
                if form.is_bound:
                    form.add_error(None, f"{field}: {problem}")
                messages.error(request, f"{field}: {problem}")
        return None
    messages.success(request, f"Change request created: {created.get_status_display()}.")
    return created.pk


@login_required
def device_panel(request: HttpRequest, device_id: uuid.UUID) -> HttpResponse:
    """The device page's panel; empty for someone who may not view configuration."""
    actor = _actor(request)
    try:
        device = selectors.access_device(actor=actor, device_id=device_id)
    except Http404:  # not theirs to see: the panel simply goes away
        return HttpResponse("")
    state = DeviceConfigurationState.objects.filter(device=device).first()
    return render(request, "configuration/device_panel.html", {"device": device, "state": state})
