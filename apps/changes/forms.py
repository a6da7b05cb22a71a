"""Portal forms of change requests: input shape only; the services validate the request."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from apps.accounts.forms import PORTAL_INPUT, PortalForm

from .choices import ChangeStatus, ResolveAt
from .kinds import names

JSON_INPUT = {**PORTAL_INPUT, "rows": 4, "class": "input mono", "spellcheck": "false"}


class JSONText(forms.CharField):
    """A JSON document typed into a text area (an object)."""

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value)
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as error:
            raise forms.ValidationError(f"Not valid JSON: {error}.") from None


class ChangeRequestFilterForm(PortalForm):
    status = forms.ChoiceField(choices=[("", "Any status"), *ChangeStatus.choices], required=False)
    kind = forms.ChoiceField(choices=[], required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [("", "Any kind"), *((k, k) for k in names())]  # type: ignore[attr-defined]


class ChangeRequestForm(PortalForm):
    """A generic request (kind + JSON spec); the kinds' own pages offer friendlier forms."""

    kind = forms.ChoiceField(choices=[])
    title = forms.CharField(max_length=200, widget=forms.TextInput(attrs=PORTAL_INPUT))
    description = forms.CharField(
        required=False, widget=forms.Textarea(attrs={**PORTAL_INPUT, "rows": 2})
    )
    spec = JSONText(widget=forms.Textarea(attrs=JSON_INPUT), help_text="What will run (JSON).")
    target = JSONText(
        widget=forms.Textarea(attrs=JSON_INPUT),
        help_text='{"device": "&lt;id&gt;"}, {"group": "&lt;id&gt;"} or {"filter": {...}}',
    )
    resolve_at = forms.ChoiceField(choices=ResolveAt.choices, initial=ResolveAt.EXECUTION)
    run_at = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={**PORTAL_INPUT, "type": "datetime-local"}),
        help_text="Empty: as soon as executed (UTC).",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [(k, k) for k in names()]  # type: ignore[attr-defined]


class DecisionForm(PortalForm):
    content_hash = forms.CharField(max_length=64, widget=forms.HiddenInput)
    comment = forms.CharField(required=False, max_length=2000)
