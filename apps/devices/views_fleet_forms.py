"""Forms of the portal's fleet pages. They only parse input: writes go through services."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.telemetry.choices import Health

from .choices import Connectivity, DeviceState
from .views_fleet_keyset import SORT_LABELS

ANY = [("", "Any")]
# transition names of apps.devices.lifecycle offered for a selection of devices
BULK_TARGETS = [
    ("enter_maintenance", "Enter maintenance"),
    ("activate", "Activate"),
    ("suspend", "Suspend"),
]


def _tags(text: str) -> list[str]:
    return [tag.strip() for tag in text.split(",") if tag.strip()]


class FleetFilterForm(forms.Form):
    """The fleet list's filters, turned into a selection spec (``apps.devices.selection``)."""

    search = forms.CharField(
        required=False, max_length=128, label="Search", help_text="Serial prefix or name"
    )
    state = forms.ChoiceField(required=False, choices=ANY + list(DeviceState.choices))
    connectivity = forms.ChoiceField(required=False, choices=ANY + list(Connectivity.choices))
    health = forms.ChoiceField(required=False, choices=ANY + list(Health.choices))
    profile = forms.ChoiceField(required=False, choices=ANY)
    tags = forms.CharField(required=False, max_length=300, help_text="All of, comma-separated")
    firmware = forms.CharField(required=False, max_length=64)
    sort = forms.ChoiceField(required=False, choices=list(SORT_LABELS.items()))

    def __init__(self, *args: Any, profiles: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["profile"].choices = ANY + [  # type: ignore[attr-defined]
            (str(profile.pk), profile.name) for profile in profiles
        ]

    def selection(self) -> dict[str, Any]:
        data = self.cleaned_data
        spec: dict[str, Any] = {}
        for key in ("state", "connectivity", "profile", "firmware"):
            if data.get(key):
                spec[key] = [data[key]]
        if _tags(data.get("tags") or ""):
            spec["tags_all"] = _tags(data["tags"])
        if (data.get("search") or "").strip():
            spec["search"] = data["search"].strip()
        return spec

    def sort_key(self) -> str:
        return str(self.cleaned_data.get("sort") or "newest")


class BulkTransitionForm(forms.Form):
    transition = forms.ChoiceField(choices=BULK_TARGETS)
    devices = forms.CharField(required=False)

    def clean_devices(self) -> list[str]:
        import uuid

        values = self.data.getlist("devices") if hasattr(self.data, "getlist") else []
        try:
            ids = [str(uuid.UUID(value)) for value in values]
        except ValueError:
            raise forms.ValidationError("Select devices from the list.") from None
        if not ids:
            raise forms.ValidationError("Select at least one device.")
        if len(ids) > 500:
            raise forms.ValidationError("Select at most 500 devices at once.")
        return ids


class ClaimForm(forms.Form):
    serial = forms.CharField(max_length=128, label="Serial number")
    manufacturer = forms.ChoiceField(choices=[])
    claim_code = forms.CharField(max_length=128, label="Claim code")

    def __init__(self, *args: Any, manufacturers: list[Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["manufacturer"].choices = [  # type: ignore[attr-defined]
            (str(organization.pk), organization.name) for organization in manufacturers
        ]
