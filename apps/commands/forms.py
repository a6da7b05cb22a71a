"""Portal forms of commands: a command change request, its arguments rendered from the
command's JSON Schema.

``arguments_form`` turns an object schema into fields: ``string`` (``enum`` -> a choice),
``integer``, ``number``, ``boolean``; ``required`` and ``minimum``/``maximum``/``maxLength``
carry over, ``description`` becomes the help text. Any other schema (nested objects, arrays,
``oneOf``...) falls back to one JSON text area for the whole ``arguments`` object. The form
only shapes the input: the kind validates it against the schema again when the request is
created.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms

from apps.accounts.forms import PORTAL_INPUT, PortalForm

SIMPLE_TYPES = ("string", "integer", "number", "boolean")
JSON_INPUT = {**PORTAL_INPUT, "rows": 4, "class": "input mono", "spellcheck": "false"}
FIELD_PREFIX = "arg_"


def _simple(schema: dict[str, Any]) -> bool:
    """Whether every property is one plain value the form can render."""
    properties = schema.get("properties") or {}
    return schema.get("type", "object") == "object" and all(
        isinstance(spec, dict) and (spec.get("type") in SIMPLE_TYPES or "enum" in spec)
        for spec in properties.values()
    )


def _field(spec: dict[str, Any], required: bool) -> forms.Field:
    common: dict[str, Any] = {"required": required, "help_text": spec.get("description", "")}
    if "enum" in spec:
        choices = [(json.dumps(value), str(value)) for value in spec["enum"]]
        blank = [] if required else [("", "—")]
        return forms.TypedChoiceField(
            choices=blank + choices, coerce=json.loads, empty_value=None, **common
        )
    kind = spec.get("type")
    low, high = spec.get("minimum"), spec.get("maximum")
    number = forms.NumberInput(attrs=PORTAL_INPUT)
    if kind == "integer":
        return forms.IntegerField(widget=number, min_value=low, max_value=high, **common)
    if kind == "number":
        return forms.FloatField(widget=number, min_value=low, max_value=high, **common)
    if kind == "boolean":
        return forms.BooleanField(required=False, help_text=common["help_text"])
    return forms.CharField(
        max_length=spec.get("maxLength"), widget=forms.TextInput(attrs=PORTAL_INPUT), **common
    )


class CommandRequestForm(PortalForm):
    """Title, target, timeout and the command's arguments (fields, or one JSON object)."""

    title = forms.CharField(max_length=200, widget=forms.TextInput(attrs=PORTAL_INPUT))
    target = forms.CharField(
        widget=forms.Textarea(attrs=JSON_INPUT),
        help_text='{"device": "&lt;id&gt;"}, {"group": "&lt;id&gt;"} or {"filter": {...}}',
    )
    timeout_s = forms.IntegerField(
        min_value=1,
        max_value=86_400,
        initial=300,
        label="Timeout (seconds)",
        widget=forms.NumberInput(attrs=PORTAL_INPUT),
        help_text="How long the device may take once it has received the command.",
    )

    def __init__(self, *args: Any, schema: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.schema = schema
        self.simple = _simple(schema)
        if self.simple:
            required = set(schema.get("required") or [])
            for name, spec in (schema.get("properties") or {}).items():
                field = _field(spec, name in required)
                field.label = spec.get("title") or name
                self.fields[FIELD_PREFIX + name] = field
        else:
            self.fields["arguments"] = forms.CharField(
                required=False,
                widget=forms.Textarea(attrs=JSON_INPUT),
                help_text="The arguments, as a JSON object.",
            )

    def clean_target(self) -> Any:
        return _json_object(self.cleaned_data["target"], "target")

    def clean_arguments(self) -> Any:
        return _json_object(self.cleaned_data.get("arguments") or "{}", "arguments")

    def arguments(self) -> dict[str, Any]:
        """The arguments object (fields left empty are left out)."""
        data = self.cleaned_data
        if not self.simple:
            return dict(data["arguments"])
        return {
            name[len(FIELD_PREFIX) :]: value
            for name, value in data.items()
            if name.startswith(FIELD_PREFIX) and value not in (None, "")
        }


def _json_object(text: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise forms.ValidationError(f"Not valid JSON: {error}.") from None
    if not isinstance(value, dict):
        raise forms.ValidationError("Must be a JSON object.")
    return value
