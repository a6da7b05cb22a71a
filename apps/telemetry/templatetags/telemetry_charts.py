"""``{% device_chart_config device as chart %}``: what the device page's telemetry chart needs
(the metric picker's choices, the API and websocket addresses, whether CSV export is allowed),
or None when the signed-in actor may not read the device's telemetry."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from apps.devices.models import Device

from ..dashboard import NUMERIC_TYPES
from ..models import LatestValues

register = template.Library()

RANGES = ("1h", "6h", "24h", "7d")


def _metrics(device: Device) -> list[dict[str, str]]:
    """The profile schema's numeric and boolean metrics, then the vitals the device reported;
    the chart opens on the first metric the device has reported (else the first)."""
    schema = device.profile_version.telemetry_schema or {}
    latest = LatestValues.objects.filter(device=device).values_list("metrics", "vitals").first()
    reported, vitals = latest if latest is not None else ({}, {})
    metrics = [
        {
            "value": metric["name"],
            "label": metric["name"],
            "unit": metric.get("unit", ""),
            "group": "Telemetry",
        }
        for metric in schema.get("metrics", [])
        if metric.get("name") and metric.get("type", "float") in NUMERIC_TYPES
    ]
    # heartbeats store uptime_s beside the vitals (latest values keep it apart)
    metrics += [
        {"value": f"vitals.{name}", "label": name, "unit": "", "group": "Vitals"}
        for name in (sorted({*vitals, "uptime_s"}) if vitals else [])
    ]
    first = next((m for m in metrics if m["value"] in reported), metrics[0] if metrics else None)
    for metric in metrics:
        metric["selected"] = "selected" if metric is first else ""
    return metrics


@register.simple_tag(takes_context=True)
def device_chart_config(context: dict[str, Any], device: Device) -> dict[str, Any] | None:
    request = context.get("request")
    actor = getattr(request, "actor", None)
    if actor is None or not actor.has_perm("telemetry.view", device.organization.path):
        return None
    return {
        "device": str(device.pk),
        "metrics": _metrics(device),
        "params": {"device": str(device.pk)},
        "api": reverse("v1:telemetry-aggregate"),
        "export": (
            reverse("v1:telemetry-aggregate-export")
            if actor.has_perm("telemetry.export", device.organization.path)
            else ""
        ),
        "live": f"/ws/telemetry/devices/{device.pk}/",
        "range": "1h",
        "ranges": RANGES,
    }
