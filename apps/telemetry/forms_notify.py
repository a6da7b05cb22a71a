"""Portal forms of the notifications: a person's preferences and a channel."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.accounts.forms import PortalForm

from .choices import ChannelKind, Severity
from .models import NotificationChannel, NotificationPreference
from .notify.inbox import PREFERENCE_FIELDS, timezone_names
from .notify.policy import ALERT_EVENTS


class PreferenceForm(PortalForm):
    portal = forms.BooleanField(required=False, label="Show notifications in the portal")
    email = forms.BooleanField(required=False, label="Email me")
    min_severity = forms.ChoiceField(
        choices=Severity.choices,
        label="Minimum severity",
        help_text="Alerts less severe than this reach you nowhere.",
    )
    quiet_start = forms.TimeField(
        required=False,
        label="Quiet hours from",
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    quiet_end = forms.TimeField(
        required=False,
        label="Quiet hours until",
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text="During quiet hours only critical alerts are emailed; the portal still records "
        "everything. 22:00 to 07:00 runs across midnight. Leave both empty for none.",
    )
    timezone = forms.ChoiceField(label="Time zone", help_text="Quiet hours and email times use it.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["timezone"].choices = [(name, name) for name in timezone_names()]  # type: ignore[attr-defined]

    @staticmethod
    def initial_for(preference: NotificationPreference) -> dict[str, Any]:
        return {name: getattr(preference, name) for name in PREFERENCE_FIELDS}


class ChannelForm(PortalForm):
    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=ChannelKind.choices, label="Kind")
    url = forms.CharField(
        max_length=1000,
        label="URL",
        widget=forms.URLInput(attrs={"placeholder": "https://"}),
        help_text="Webhook: your endpoint, signed with Standard Webhooks headers. Slack: the "
        "incoming-webhook URL (it is a credential: shown masked afterwards).",
    )
    min_severity = forms.ChoiceField(
        choices=Severity.choices, initial=Severity.WARNING, label="Minimum severity"
    )
    events = forms.CharField(
        required=False,
        label="Events",
        help_text=f"Comma-separated patterns, e.g. <code>alert.opened</code> or "
        f"<code>alert.*</code>; empty: every alert event ({', '.join(ALERT_EVENTS)}).",
    )
    enabled = forms.BooleanField(required=False, initial=True, label="Enabled")

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            del self.fields["kind"]  # the kind never changes (nor does the signing scheme)

    @staticmethod
    def initial_for(channel: NotificationChannel) -> dict[str, Any]:
        return {
            "name": channel.name,
            "url": channel.url,
            "min_severity": channel.min_severity,
            "events": ", ".join(channel.events),
            "enabled": channel.enabled,
        }

    def service_fields(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["events"] = [part.strip() for part in data["events"].split(",") if part.strip()]
        return data
