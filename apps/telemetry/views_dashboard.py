"""The fleet dashboard page (``/o/<id>/fleet-dashboard/``) and its map cells (JSON).

Both need ``device.view`` on the organization (404 outside the actor's view, 403 without the
permission); every figure is counted over the devices of the subtree the actor may view.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from apps.accounts.portal import organization_for
from apps.core.actors import Actor

from . import dashboard
from .choices import Health, Severity

HEALTH_LINKS: dict[str, str] = {Health.OFFLINE.value: "connectivity=offline"}
ONLINE = (Health.OK, Health.WARNING, Health.CRITICAL)  # seen, and not offline
RANGES = ("1h", "6h", "24h", "7d")


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


def _url(name: str, organization_id: uuid.UUID) -> str:
    try:
        return reverse(name, kwargs={"organization_id": organization_id})
    except NoReverseMatch:  # an optional page that is not installed
        return ""


@login_required
def fleet_dashboard(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    organization = organization_for(request, organization_id, "device.view")
    actor = _actor(request)
    summary = dashboard.fleet_summary(actor=actor, organization=organization)
    devices_url = _url("fleet:list", organization.pk)
    alerts_url = _url("alerts:list", organization.pk)
    context: dict[str, Any] = {
        "organization": organization,
        "summary": summary,
        "health": _health_rows(summary, devices_url),
        "firmware": _firmware_rows(summary, devices_url),
        "alerts": _alert_rows(summary.alerts, alerts_url),
        "open_alerts": sum((summary.alerts or {}).values()),
        "online": sum(summary.health[value] for value in ONLINE),
        "offline_url": f"{devices_url}?connectivity=offline" if devices_url else "",
        "devices_url": devices_url,
        "alerts_url": alerts_url,
        "map_url": reverse("analytics:map", kwargs={"organization_id": organization.pk}),
        "map_tiles": getattr(settings, "FLEET_MAP_TILE_URL", ""),
    }
    if actor.has_perm("telemetry.view", organization.path):
        context["chart"] = _fleet_chart(actor, organization)
    return render(request, "telemetry/dashboard.html", context)


def _percent(count: int, total: int) -> float:
    return round(100 * count / (total or 1), 1)


def _health_rows(summary: dashboard.FleetSummary, devices_url: str) -> list[dict[str, Any]]:
    return [
        {
            "value": value,
            "label": label,
            "count": summary.health[value],
            "percent": _percent(summary.health[value], summary.devices),
            "url": f"{devices_url}?{HEALTH_LINKS[value]}" if value in HEALTH_LINKS else "",
        }
        for value, label in Health.choices
    ]


def _firmware_rows(summary: dashboard.FleetSummary, devices_url: str) -> list[dict[str, Any]]:
    """The versions, linked to the fleet list filtered on each ("" and "other" are not one)."""
    return [
        {
            "version": version,
            "count": count,
            "percent": _percent(count, summary.devices),
            "url": (
                f"{devices_url}?{urlencode({'firmware': version})}"
                if version not in ("", "other")
                else ""
            ),
        }
        for version, count in summary.firmware
    ]


def _alert_rows(alerts: dict[str, int] | None, alerts_url: str) -> list[dict[str, Any]] | None:
    if alerts is None:
        return None
    return [
        {
            "severity": value,
            "label": label,
            "count": alerts[value],
            "url": f"{alerts_url}?status=active&severity={value}" if alerts_url else "",
        }
        for value, label in Severity.choices
    ]


def _fleet_chart(actor: Actor, organization: Any) -> dict[str, Any]:
    """The dashboard chart: one metric of the fleet, a series per profile, last 24 hours."""
    return {
        "metrics": [
            {"value": metric["name"], "label": metric["name"], "unit": metric["unit"]}
            for metric in dashboard.chart_metrics(actor, organization)
        ],
        "params": {"organization": str(organization.pk), "group_by": "profile"},
        "api": reverse("v1:telemetry-aggregate"),
        "export": (
            reverse("v1:telemetry-aggregate-export")
            if actor.has_perm("telemetry.export", organization.path)
            else ""
        ),
        "range": "24h",
        "ranges": RANGES,
        "live": "",
    }


def _bbox(value: str) -> tuple[float, float, float, float] | None:
    try:
        south, west, north, east = (float(part) for part in value.split(","))
    except ValueError:
        return None
    return (south, west, north, east)


def _zoom(value: str, default: int) -> int:
    try:
        return max(0, min(18, int(value)))
    except ValueError:
        return default


@login_required
def fleet_map(request: HttpRequest, organization_id: uuid.UUID) -> JsonResponse:
    """Map cells for the zoom level and bounding box asked for; without a box, for the whole
    fleet, with its extent and a zoom level that frames it."""
    organization = organization_for(request, organization_id, "device.view")
    actor = _actor(request)
    bbox = _bbox(request.GET.get("bbox", ""))
    extent = None if bbox else dashboard.map_extent(actor, organization)
    zoom = _zoom(request.GET.get("zoom", ""), dashboard.zoom_for(extent))
    cells = dashboard.map_cells(actor=actor, organization=organization, zoom=zoom, bbox=bbox)
    device_url = _url("fleet:list", organization.pk)
    return JsonResponse(
        {
            "zoom": zoom,
            "extent": extent,
            "cells": [
                {
                    "lat": cell.latitude,
                    "lon": cell.longitude,
                    "devices": cell.devices,
                    "online": cell.online,
                    "label": cell.label,
                    "url": f"{device_url}{cell.device_id}/" if cell.device_id else "",
                }
                for cell in cells
            ],
        }
    )
