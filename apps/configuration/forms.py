"""Portal forms of configuration: input shape only; the change-request services validate."""

from __future__ import annotations

from django import forms

from apps.accounts.forms import PORTAL_INPUT, PortalForm
from apps.changes.forms import JSON_INPUT, JSONText

from .choices import SyncStatus


class StatusFilterForm(PortalForm):
    status = forms.ChoiceField(
        choices=[("", "Any status"), *SyncStatus.choices], required=False, label="Status"
    )


class DeviceChangeForm(PortalForm):
    """A change of the device's own layer, proposed as a change request."""

    title = forms.CharField(max_length=200, widget=forms.TextInput(attrs=PORTAL_INPUT))
    values = JSONText(
        required=False,
        widget=forms.Textarea(attrs=JSON_INPUT),
        help_text='Values to set (JSON object), e.g. {"brightness": 70}.',
    )
    unset = forms.CharField(
        required=False,
        widget=forms.TextInput(attrs=PORTAL_INPUT),
        help_text="Dotted paths to remove from the overrides, separated by commas.",
    )

    def clean_values(self) -> dict[str, object]:
        value = self.cleaned_data.get("values")
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError("Must be a JSON object.")
        return value

    def paths(self) -> list[str]:
        return [part.strip() for part in self.cleaned_data["unset"].split(",") if part.strip()]
