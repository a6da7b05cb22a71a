"""Portal form of the profile editor: input parsing only; the service validates the rules."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from apps.accounts.forms import PORTAL_INPUT, PortalForm

from .choices import ConnectionType
from .models import DeviceProfile, ProfileVersion

JSON_FIELDS = ("attributes_schema", "telemetry_schema", "command_catalog", "configuration_schema")
LIST_FIELDS = ("hardware_revisions", "capabilities")
CODE = {"class": "input", "rows": 8, "spellcheck": "false"}


def _json_field(label: str, help_text: str) -> forms.CharField:
    return forms.CharField(
        label=label, widget=forms.Textarea(attrs=CODE), help_text=help_text, strip=False
    )


class ProfileForm(PortalForm):
    name = forms.CharField(max_length=200, widget=forms.TextInput(attrs=PORTAL_INPUT))
    slug = forms.SlugField(
        max_length=80,
        required=False,
        widget=forms.TextInput(attrs=PORTAL_INPUT),
        help_text="Optional; made from the name when empty.",
    )
    description = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"class": "input", "rows": 2})
    )
    connection_type = forms.ChoiceField(choices=ConnectionType.choices)
    hardware_revisions = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs=PORTAL_INPUT),
        help_text="Comma-separated, e.g. rev-a, rev-b.",
    )
    capabilities = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs=PORTAL_INPUT),
        help_text="Comma-separated, e.g. gps, ota.",
    )
    heartbeat_interval_seconds = forms.IntegerField(
        label="Heartbeat interval (seconds)", widget=forms.NumberInput(attrs=PORTAL_INPUT)
    )
    heartbeat_missed_beats = forms.IntegerField(
        label="Missed beats before offline", widget=forms.NumberInput(attrs=PORTAL_INPUT)
    )
    attributes_schema = _json_field("Attributes schema", "JSON Schema of device attributes.")
    telemetry_schema = _json_field(
        "Telemetry schema", 'Metrics and normalization rules: {"metrics": [...]}.'
    )
    command_catalog = _json_field(
        "Command catalog", "List of {name, schema, criticality, description}."
    )
    configuration_schema = _json_field(
        "Configuration schema", "JSON Schema of the desired configuration."
    )

    @classmethod
    def initial_for(cls, profile: DeviceProfile, version: ProfileVersion) -> dict[str, Any]:
        initial: dict[str, Any] = {
            "name": profile.name,
            "slug": profile.slug,
            "description": profile.description,
            "connection_type": version.connection_type,
            "heartbeat_interval_seconds": version.heartbeat_interval_seconds,
            "heartbeat_missed_beats": version.heartbeat_missed_beats,
        }
        for name in LIST_FIELDS:
            initial[name] = ", ".join(getattr(version, name))
        for name in JSON_FIELDS:
            initial[name] = json.dumps(getattr(version, name), indent=2, ensure_ascii=False)
        return initial

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        version = ProfileVersion()
        initial = cls.initial_for(DeviceProfile(), version)
        return {**initial, "name": "", "slug": ""}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        for name in JSON_FIELDS:
            if name in cleaned:
                try:
                    cleaned[name] = json.loads(cleaned[name])
                except ValueError as error:
                    self.add_error(name, ValidationError(f"Not valid JSON: {error}"))
        for name in LIST_FIELDS:
            if name in cleaned:
                cleaned[name] = [part.strip() for part in cleaned[name].split(",") if part.strip()]
        return cleaned

    def service_fields(self) -> dict[str, Any]:
        """Every field, as the services take them (``slug`` only when given)."""
        fields = dict(self.cleaned_data)
        if not fields.get("slug"):
            fields.pop("slug", None)
        return fields
