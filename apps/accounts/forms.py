"""Portal forms: input validation only; the writes happen in ``services``."""

from __future__ import annotations

import datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.core.actors import Actor

from .models import Organization
from .roles import Role, can_grant

PORTAL_INPUT = {"class": "input"}


def grantable_roles(actor: Actor, organization: Organization) -> list[tuple[str, str]]:
    """The roles ``actor`` may hand out on ``organization`` (never more rights than its own)."""
    held = actor.permissions_on(organization.path)
    return [
        (value, label)
        for value, label in Role.choices
        if actor.is_platform_staff or can_grant(held, value)
    ]


class RoleChoiceMixin:
    def limit_roles(self, actor: Actor, organization: Organization) -> None:
        field: forms.ChoiceField = self.fields["role"]  # type: ignore[attr-defined]
        field.choices = grantable_roles(actor, organization)


def apply_service_error(form: forms.Form, error: ValidationError) -> None:
    """Attach a service's ValidationError to the form's fields (or to the form when unknown)."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for name, messages in error.message_dict.items():
        form.add_error(name if name in form.fields else None, messages)


class PortalForm(forms.Form):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class InvitationForm(RoleChoiceMixin, PortalForm):
    email = forms.EmailField(max_length=254, widget=forms.EmailInput(attrs=PORTAL_INPUT))
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class RoleForm(RoleChoiceMixin, PortalForm):
    role = forms.ChoiceField(choices=Role.choices)


class APIKeyForm(RoleChoiceMixin, PortalForm):
    name = forms.CharField(max_length=100, widget=forms.TextInput(attrs=PORTAL_INPUT))
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)
    expires_on = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={**PORTAL_INPUT, "type": "date"}),
        help_text="Optional. The key stops working at the start of this day (UTC).",
    )

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        if not name:
            raise ValidationError("This field may not be blank.")
        return name

    def clean_expires_on(self) -> datetime.date | None:
        value: datetime.date | None = self.cleaned_data.get("expires_on")
        if value is not None and value <= timezone.now().date():
            raise ValidationError("Must be in the future.")
        return value

    def expires_at(self) -> datetime.datetime | None:
        value = self.cleaned_data.get("expires_on")
        if value is None:
            return None
        return datetime.datetime.combine(value, datetime.time.min, tzinfo=datetime.UTC)


class AuditFilterForm(PortalForm):
    action = forms.CharField(
        required=False,
        max_length=100,
        widget=forms.TextInput(
            attrs={**PORTAL_INPUT, "placeholder": "starts with, e.g. membership."}
        ),
    )
    actor = forms.CharField(
        required=False, max_length=255, widget=forms.TextInput(attrs=PORTAL_INPUT)
    )
    object_type = forms.CharField(
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={**PORTAL_INPUT, "placeholder": "accounts.membership"}),
    )
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "Must be on or after the start date.")
        return data

    def selector_filters(self) -> dict[str, Any]:
        """Keyword arguments for ``apps.core.selectors.audit_log_list``."""
        data = self.cleaned_data
        since, until = data.get("since"), data.get("until")
        return {
            "action": data.get("action", ""),
            "actor_label": data.get("actor", ""),
            "object_type": data.get("object_type", ""),
            "since": _day_start(since) if since else None,
            "until": _day_start(until + datetime.timedelta(days=1)) if until else None,
        }


def _day_start(day: datetime.date) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time.min, tzinfo=datetime.UTC)
