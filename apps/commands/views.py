"""Portal pages of commands (namespace ``commands``):

- ``o/<organization>/commands/new/``: pick a command of the catalogs usable in the
  organization, then a form rendered from its JSON Schema; it creates a ``command`` change
  request (``apps.changes.services``) and leads to the request's page. Nothing runs yet.
- ``change-requests/<id>/commands/``: a bulk command's progress: bars and counts by status
  (live: ``commands.progress`` pushes) and the per-device table, filtered by status.

404 outside the actor's view, 403 without the permission (``organization_for``).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from apps.accounts.portal import organization_for
from apps.changes import services as change_services
from apps.changes.models import ChangeRequest
from apps.core.actors import Actor
from apps.core.scoping import ancestor_ids
from apps.profiles.models import ProfileVersion

from .choices import CommandStatus
from .forms import FIELD_PREFIX, CommandRequestForm
from .selectors import command_list, command_progress

TABLE_ROWS = 100
BAR_STATUSES = (
    "succeeded",
    "failed",
    "timed_out",
    "expired",
    "cancelled",
    "in_progress",
    "received",
    "sent",
    "queued",
)


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


def _catalog(organization: Any) -> list[dict[str, Any]]:
    """Every (profile version, command) usable in the organization, newest version first."""
    usable = Q(profile__organization__path__startswith=organization.path) | Q(
        profile__organization_id__in=ancestor_ids([organization.path])
    )
    versions = ProfileVersion.objects.filter(usable).select_related("profile")
    found = []
    for version in versions.order_by("profile__name", "-number"):
        for command in version.command_catalog or []:
            if isinstance(command, dict) and command.get("name"):
                found.append({"version": version, **command})
    return found


@login_required
@require_http_methods(["GET", "POST"])
def command_new(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    organization = organization_for(request, organization_id, "changerequest.add")
    catalog = _catalog(organization)
    chosen = _chosen(catalog, request.GET.get("version", ""), request.GET.get("command", ""))
    if chosen is None:
        context = {"organization": organization, "catalog": catalog}
        return render(request, "commands/choose.html", context)
    schema = chosen.get("schema") or {"type": "object"}
    initial = {"title": f"{chosen['name']} on …", "target": request.GET.get("target", "")}
    data = request.POST if request.method == "POST" else None
    form = CommandRequestForm(data, schema=schema, initial=initial)
    if request.method == "POST" and form.is_valid():
        created = _create(request, organization, chosen, form)
        if created is not None:
            messages.success(request, f"Command request created: {created.get_status_display()}.")
            return redirect("changes:detail", request_id=created.pk)
    context = {"organization": organization, "form": form, "command": chosen}
    status = 400 if request.method == "POST" else 200
    return render(request, "commands/new.html", context, status=status)


def _chosen(catalog: list[dict[str, Any]], version: str, name: str) -> dict[str, Any] | None:
    for entry in catalog:
        if str(entry["version"].pk) == version and entry["name"] == name:
            return entry
    if version or name:
        raise Http404("No such command in the catalogs here.")
    return None


def _create(
    request: HttpRequest, organization: Any, chosen: dict[str, Any], form: CommandRequestForm
) -> ChangeRequest | None:
    data = form.cleaned_data
    spec = {
        "command": chosen["name"],
        "arguments": form.arguments(),
        "timeout_s": data["timeout_s"],
        "profile": str(chosen["version"].profile_id),
    }
    try:
        return change_services.change_request_create(
            actor=_actor(request),
            organization=organization,
            kind="command",
            title=data["title"],
            spec=spec,
            target=data["target"],
        )
    except ValidationError as error:
        for field, problems in error.message_dict.items():
            name = field if field in form.fields else None
            if field == "arguments" and form.simple:
                name = None
            form.add_error(name, problems)
        return None


@login_required
def command_progress_page(request: HttpRequest, request_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    visible = ChangeRequest.objects.for_actor(actor, "view").select_related("organization")
    change = get_object_or_404(visible, pk=request_id, kind="command")
    organization = organization_for(request, change.organization_id, "command.view")
    counts = command_progress(actor=actor, request_id=change.pk) or {}
    status = request.GET.get("status", "")
    rows = command_list(actor=actor).filter(request_id=change.pk).order_by("device__serial")
    if status in CommandStatus.values:
        rows = rows.filter(status=status)
    total = counts.get("total", 0)
    context = {
        "organization": organization,
        "change": change,
        "counts": counts,
        "bars": [
            {
                "status": name,
                "label": CommandStatus(name).label,
                "count": counts.get(name, 0),
                "percent": round(100 * counts.get(name, 0) / total, 1) if total else 0,
            }
            for name in BAR_STATUSES
        ],
        "rows": list(rows[:TABLE_ROWS]),
        "status": status,
        "statuses": CommandStatus.choices,
        "limit": TABLE_ROWS,
    }
    return render(request, "commands/progress.html", context)


__all__ = ["FIELD_PREFIX", "command_new", "command_progress_page"]
