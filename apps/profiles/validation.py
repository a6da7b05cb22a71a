"""Checks of a profile version's fields and validation of device attributes against it.

``version_field_errors`` returns field-level messages (the services raise them as one
``ValidationError``); ``attributes_errors`` is what the registry and the importer call to check
device attributes, with a compiled validator cached per version id and ``updated_at``.
"""

from __future__ import annotations

import functools
import re
import uuid
from datetime import datetime
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.exceptions import ValidationError as SchemaValidationError

from . import normalizer
from .choices import ConnectionType, Criticality
from .models import ProfileVersion

VERSION_FIELDS = (
    "hardware_revisions",
    "connection_type",
    "capabilities",
    "attributes_schema",
    "telemetry_schema",
    "heartbeat_interval_seconds",
    "heartbeat_missed_beats",
    "command_catalog",
    "configuration_schema",
)
COMMAND_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
COMMAND_KEYS = {"name", "schema", "criticality", "description"}
MAX_HEARTBEAT_SECONDS = 7 * 24 * 3600
MAX_MISSED_BEATS = 1000


def json_schema_error(schema: Any) -> str | None:
    """Why ``schema`` is not a valid JSON Schema (draft 2020-12) object, or None."""
    if not isinstance(schema, dict):
        return "Must be a JSON Schema object."
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        where = "/".join(str(part) for part in error.absolute_path)
        return f"Not a valid JSON Schema{f' at {where}' if where else ''}: {error.message}"
    return None


def _labels_error(value: Any) -> str | None:
    if not isinstance(value, list) or not all(
        isinstance(item, str) and 0 < len(item.strip()) <= 64 for item in value
    ):
        return "Must be a list of labels of 1 to 64 characters."
    if len({item.strip() for item in value}) != len(value):
        return "Must not repeat a label."
    return None


def _command_errors(index: int, command: Any, seen: set[str]) -> list[str]:
    if not isinstance(command, dict):
        return [f"Command {index + 1}: must be an object."]
    name = command.get("name")
    if not isinstance(name, str) or not COMMAND_NAME.match(name):
        return [f"Command {index + 1}: name must be lowercase letters, digits, - and _."]
    label = f"Command {name}"
    errors = [f"{label}: unknown key {key!r}." for key in sorted(set(command) - COMMAND_KEYS)]
    if name in seen:
        errors.append(f"{label}: duplicate name.")
    seen.add(name)
    schema_error = json_schema_error(command.get("schema", {"type": "object"}))
    if schema_error:
        errors.append(f"{label}: schema: {schema_error}")
    if command.get("criticality", Criticality.NORMAL) not in Criticality.values:
        errors.append(f"{label}: criticality must be one of {', '.join(Criticality.values)}.")
    if not isinstance(command.get("description", ""), str):
        errors.append(f"{label}: description must be text.")
    return errors


def command_catalog_errors(catalog: Any) -> list[str]:
    if not isinstance(catalog, list):
        return ["Must be a list of commands."]
    seen: set[str] = set()
    errors: list[str] = []
    for index, command in enumerate(catalog):
        errors += _command_errors(index, command, seen)
    return errors


def _bounded(value: Any, low: int, high: int) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return f"Must be a whole number from {low} to {high}."
    return None


def version_field_errors(fields: dict[str, Any]) -> dict[str, list[str]]:
    """Field-level messages for the version fields present in ``fields``."""
    checks: dict[str, Any] = {
        "hardware_revisions": lambda v: _labels_error(v),
        "capabilities": lambda v: _labels_error(v),
        "connection_type": lambda v: (
            None
            if v in ConnectionType.values
            else f"Must be one of {', '.join(ConnectionType.values)}."
        ),
        "attributes_schema": json_schema_error,
        "configuration_schema": json_schema_error,
        "telemetry_schema": normalizer.validate_schema,
        "command_catalog": command_catalog_errors,
        "heartbeat_interval_seconds": lambda v: _bounded(v, 1, MAX_HEARTBEAT_SECONDS),
        "heartbeat_missed_beats": lambda v: _bounded(v, 1, MAX_MISSED_BEATS),
    }
    errors: dict[str, list[str]] = {}
    for name, value in fields.items():
        found = checks[name](value)
        if found:
            errors[name] = found if isinstance(found, list) else [found]
    return errors


# --- device attributes -------------------------------------------------------------------------


class _VersionKey:
    """Hashes as (version id, updated_at) so an edited version gets a fresh validator."""

    def __init__(self, version_id: uuid.UUID, updated_at: datetime, schema: dict[str, Any]):
        self.key = (version_id, updated_at)
        self.schema = schema

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _VersionKey) and other.key == self.key


@functools.lru_cache(maxsize=1024)
def _validator(key: _VersionKey) -> Draft202012Validator:
    return Draft202012Validator(key.schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def attributes_validator(version: ProfileVersion) -> Draft202012Validator:
    """The compiled attributes validator of ``version`` (cached per id and ``updated_at``)."""
    return _validator(_VersionKey(version.pk, version.updated_at, version.attributes_schema))


def _error_path(error: SchemaValidationError) -> str:
    parts = [str(part) for part in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        for name in error.validator_value:
            if name not in error.instance and error.message == f"{name!r} is a required property":
                parts.append(str(name))
                break
    return ".".join(parts) or NON_FIELD_ERRORS


def attributes_errors(version: ProfileVersion, attributes: Any) -> dict[str, str]:
    """Field-level errors of ``attributes`` against the version's attributes schema:
    ``{"location.floor": "'x' is not of type 'integer'"}``; errors about the whole object
    are under ``"__all__"``. Empty when the attributes are valid."""
    found: dict[str, str] = {}
    errors = attributes_validator(version).iter_errors(attributes)
    for error in sorted(errors, key=lambda e: (_error_path(e), e.message)):
        found.setdefault(_error_path(error), error.message)
    return found
