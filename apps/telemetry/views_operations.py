"""The portal's operations page (``/operations/``): how the platform's plumbing is doing.

For platform staff and for the owners and admins of organizations (the roles that may redeliver
domain events, ``event.redeliver``). The Ingest panel shows the ingest workers' rate, lag and
batch sizes (``ingest_stats.snapshot()``) and the dead letters waiting, by reason, in the
actor's own organizations. The per-worker table (host names, process ids) is infrastructure:
only platform staff and the owners and admins of the platform organization see it. The panel
refreshes itself every few seconds (htmx).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import redis
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.accounts.models import Organization
from apps.accounts.portal import current_organization

from . import ingest_stats
from .choices import DeadLetterReason, DeadLetterStatus
from .models import DeadLetter

# Owners and admins hold it, and nobody else: the operations roles.
OPERATIONS_PERMISSION = "event.redeliver"
REFRESH_SECONDS = 5


def _actor(request: HttpRequest) -> Any:
    return request.actor  # type: ignore[attr-defined]


def may_operate(actor: Any) -> bool:
    return bool(actor.is_platform_staff or actor.has_any(OPERATIONS_PERMISSION))


def runs_the_platform(actor: Any) -> bool:
    """Platform staff, or an owner / admin of a platform organization (the installation)."""
    if actor.is_platform_staff:
        return True
    paths = Organization.objects.filter(kind=Organization.Kind.PLATFORM).values_list(
        "path", flat=True
    )
    return any(actor.has_perm(OPERATIONS_PERMISSION, path) for path in paths)


def waiting_dead_letters(actor: Any) -> list[dict[str, Any]]:
    """New dead letters by reason in the actor's organizations (one GROUP BY)."""
    counted = dict(
        DeadLetter.objects.for_actor(actor, "view")
        .filter(status=DeadLetterStatus.NEW)
        .order_by()
        .values_list("reason")
        .annotate(total=Count("id"))
        .values_list("reason", "total")
    )
    return [
        {"value": value, "label": label, "total": counted[value]}
        for value, label in DeadLetterReason.choices
        if counted.get(value)
    ]


def ingest_context(actor: Any) -> dict[str, Any]:
    try:
        snapshot = ingest_stats.snapshot()
        unavailable = False
    except redis.RedisError:
        snapshot, unavailable = {"workers": [], "totals": ingest_stats.totals([])}, True
    infrastructure = runs_the_platform(actor)
    for worker in snapshot["workers"]:
        stamp = worker["last_batch_at"]
        worker["last_batch"] = datetime.fromisoformat(stamp) if stamp else None
    return {
        "totals": snapshot["totals"],
        "workers": snapshot["workers"] if infrastructure else [],
        "show_workers": infrastructure,
        "stats_unavailable": unavailable,
        "dead_letters": waiting_dead_letters(actor),
        "refresh_seconds": REFRESH_SECONDS,
    }


@login_required
def operations(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    if not may_operate(actor):
        raise PermissionDenied
    context = ingest_context(actor)
    organization = current_organization(request)
    context["organization"] = organization
    context["can_open_dead_letters"] = organization is not None and actor.has_perm(
        "telemetry.view", organization.path
    )
    if request.headers.get("HX-Request"):
        return render(request, "telemetry/operations_ingest.html", context)
    return render(request, "telemetry/operations.html", context)
