"""Portal forms of alerting: input shape only; the services validate the rule itself.

The rule form has one fieldset per kind (the page shows the one of the chosen kind); ``rule()``
turns the fields of that kind into the rule's ``condition`` JSON, and ``apply_rule_errors``
puts a service's ``condition.<key>`` errors back on the matching field.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from apps.accounts.forms import PORTAL_INPUT, PortalForm
from apps.core.actors import Actor
from apps.devices.groups import group_list
from apps.devices.models import Device
from apps.profiles.models import DeviceProfile

from .alerting.rules import EVENT_SEVERITIES, OPERATORS, STATE_FIELDS
from .alerting.selectors import ACTIVE
from .choices import AlertStatus, RuleKind, Severity
from .models import AlertRule

CHOICES_LIMIT = 200
STATUS_CHOICES = [(ACTIVE, "Open or acknowledged"), *AlertStatus.choices, ("", "Any status")]
OPERATOR_LABELS = {"gt": ">", "gte": "≥", "lt": "<", "lte": "≤", "eq": "=", "ne": "≠"}
STATE_VALUES = sorted({value for values in STATE_FIELDS.values() for value in values})
# condition key -> form field, per kind (the service's "condition.<key>" errors land here)
CONDITION_FIELDS: dict[str, dict[str, str]] = {
    RuleKind.THRESHOLD: {"metric": "metric", "operator": "operator", "value": "value"},
    RuleKind.RANGE: {"metric": "metric", "low": "low", "high": "high", "inside": "inside"},
    RuleKind.MISSING_DATA: {"metric": "metric", "seconds": "seconds"},
    RuleKind.MISSED_HEARTBEATS: {},
    RuleKind.STATE_CHANGE: {"field": "state_field", "to": "to_value", "from": "from_value"},
    RuleKind.EVENT_MATCH: {
        "type": "event_type",
        "min_severity": "min_severity",
        "clear_type": "clear_type",
    },
    RuleKind.FLEET_OFFLINE: {"percent": "percent", "minutes": "minutes"},
}
# fields of each kind's fieldset (the template shows one fieldset at a time)
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    kind: tuple(dict.fromkeys(fields.values())) for kind, fields in CONDITION_FIELDS.items()
}


def _text(**attrs: Any) -> forms.TextInput:
    return forms.TextInput(attrs={**PORTAL_INPUT, **attrs})


def _number(**attrs: Any) -> forms.NumberInput:
    return forms.NumberInput(attrs={**PORTAL_INPUT, **attrs})


class AlertFilterForm(PortalForm):
    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False, initial=ACTIVE)
    severity = forms.ChoiceField(choices=[("", "Any severity"), *Severity.choices], required=False)
    rule = forms.ChoiceField(required=False, label="Rule")
    device = forms.CharField(required=False, max_length=128, label="Device serial", widget=_text())

    def limit_rules(self, rules: Any) -> None:
        field: forms.ChoiceField = self.fields["rule"]  # type: ignore[assignment]
        field.choices = [("", "Any rule")] + [
            (str(pk), name) for pk, name in rules.values_list("pk", "name")[:CHOICES_LIMIT]
        ]


def parse_value(text: str) -> Any:
    """A threshold's value typed in a text box: a number, true / false, or the text itself."""
    text = text.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


class AlertRuleForm(PortalForm):
    """A rule of any kind; the condition is built from the fields of the chosen kind."""

    name = forms.CharField(max_length=200, widget=_text())
    description = forms.CharField(required=False, widget=_text())
    kind = forms.ChoiceField(choices=RuleKind.choices, widget=forms.Select(attrs=PORTAL_INPUT))
    severity = forms.ChoiceField(choices=Severity.choices, initial=Severity.WARNING)
    enabled = forms.BooleanField(required=False, initial=True)
    auto_resolve = forms.BooleanField(
        required=False, initial=True, label="Resolve by itself once the condition clears"
    )
    open_after_seconds = forms.IntegerField(
        min_value=0,
        initial=0,
        label="Open after (seconds)",
        help_text="How long the condition must hold before the alert opens.",
        widget=_number(),
    )
    clear_after_seconds = forms.IntegerField(
        min_value=0,
        initial=0,
        label="Clear after (seconds)",
        help_text="How long it must stay clear before the alert resolves.",
        widget=_number(),
    )
    profile = forms.ChoiceField(required=False, label="Only devices of profile")
    group = forms.ChoiceField(required=False, label="Only devices of group")
    device = forms.CharField(
        required=False, max_length=128, label="Only the device with serial", widget=_text()
    )
    # per-kind fields
    metric = forms.CharField(required=False, max_length=64, widget=_text(placeholder="temperature"))
    operator = forms.ChoiceField(
        required=False, choices=[(key, OPERATOR_LABELS[key]) for key in OPERATORS]
    )
    value = forms.CharField(required=False, max_length=100, widget=_text(placeholder="80"))
    low = forms.FloatField(required=False, widget=_number(step="any"))
    high = forms.FloatField(required=False, widget=_number(step="any"))
    inside = forms.BooleanField(required=False, label="Alert inside the range (else outside)")
    seconds = forms.IntegerField(required=False, label="Silent for (seconds)", widget=_number())
    state_field = forms.ChoiceField(
        required=False, label="Field", choices=[(key, key.capitalize()) for key in STATE_FIELDS]
    )
    to_value = forms.ChoiceField(
        required=False, label="Changes to", choices=[(v, v) for v in STATE_VALUES]
    )
    from_value = forms.ChoiceField(
        required=False,
        label="From (optional)",
        choices=[("", "Any"), *((v, v) for v in [*STATE_VALUES, "maintenance", "unknown"])],
    )
    event_type = forms.CharField(
        required=False, max_length=200, label="Event type", widget=_text(placeholder="door.*")
    )
    min_severity = forms.ChoiceField(
        required=False, label="Minimum event severity", choices=[(s, s) for s in EVENT_SEVERITIES]
    )
    clear_type = forms.CharField(
        required=False,
        max_length=200,
        label="Clearing event type (optional)",
        widget=_text(placeholder="door.closed"),
    )
    percent = forms.FloatField(required=False, label="Offline above (%)", widget=_number())
    minutes = forms.IntegerField(required=False, label="For (minutes)", widget=_number())

    def limit_choices(self, actor: Actor) -> None:
        profiles = DeviceProfile.objects.for_actor(actor, "view").order_by("name")
        field: forms.ChoiceField = self.fields["profile"]  # type: ignore[assignment]
        field.choices = [("", "Any profile")] + [
            (str(pk), name) for pk, name in profiles.values_list("pk", "name")[:CHOICES_LIMIT]
        ]
        field = self.fields["group"]  # type: ignore[assignment]
        field.choices = [("", "Any group")] + [
            (str(pk), name)
            for pk, name in group_list(actor=actor)
            .order_by("name")
            .values_list("pk", "name")[:CHOICES_LIMIT]
        ]

    def fill(self, rule: AlertRule) -> None:
        """Initial values from a saved rule (the edit page)."""
        for name in ("name", "description", "kind", "severity", "enabled", "auto_resolve"):
            self.initial[name] = getattr(rule, name)
        self.initial["open_after_seconds"] = rule.open_after_seconds
        self.initial["clear_after_seconds"] = rule.clear_after_seconds
        self.initial["profile"] = str(rule.profile_id or "")
        self.initial["group"] = str(rule.group_id or "")
        self.initial["device"] = rule.device.serial if rule.device else ""
        for key, field in CONDITION_FIELDS[rule.kind].items():
            if key in rule.condition:
                value = rule.condition[key]
                self.initial[field] = str(value).lower() if isinstance(value, bool) else value

    def condition(self) -> dict[str, Any]:
        data = self.cleaned_data
        kind = data["kind"]
        condition: dict[str, Any] = {}
        for key, field in CONDITION_FIELDS[kind].items():
            value = data.get(field)
            if field == "value":
                value = parse_value(value or "")
            if field in ("inside",) or value not in (None, ""):
                condition[key] = value
        for key in ("seconds", "minutes", "low", "high", "percent"):
            if isinstance(condition.get(key), float) and condition[key].is_integer():
                condition[key] = int(condition[key])
        return condition

    def rule_fields(self, actor: Actor) -> dict[str, Any]:
        """The service's arguments (kind excluded), with the scope's objects resolved."""
        data = self.cleaned_data
        fields = {
            name: data[name]
            for name in (
                "name",
                "description",
                "severity",
                "enabled",
                "auto_resolve",
                "open_after_seconds",
                "clear_after_seconds",
            )
        }
        fields["condition"] = self.condition()
        fields["profile"] = _by_id(DeviceProfile, data["profile"])
        fields["group"] = _by_id(group_list(actor=actor).model, data["group"])
        fields["device"] = None
        if data["device"].strip():
            fields["device"] = (
                Device.objects.for_actor(actor, "view")
                .filter(serial=data["device"].strip())
                .first()
            )
            if fields["device"] is None:
                raise ValidationError({"device": ["No device with this serial."]})
        return fields


def _by_id(model: Any, value: str) -> Any:
    if not value:
        return None
    try:
        return model.objects.filter(pk=uuid.UUID(value)).first()
    except ValueError:
        return None


def apply_rule_errors(form: AlertRuleForm, error: ValidationError) -> None:
    """A service's ValidationError on the form's fields (``condition.metric`` -> metric)."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    kind = form.cleaned_data.get("kind", "")
    mapping = {f"condition.{key}": field for key, field in CONDITION_FIELDS.get(kind, {}).items()}
    for name, messages in error.message_dict.items():
        target = mapping.get(name, name)
        form.add_error(target if target in form.fields else None, messages)


class AlertNoteForm(PortalForm):
    note = forms.CharField(
        required=False, max_length=500, widget=_text(placeholder="Optional note")
    )
