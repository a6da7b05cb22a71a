"""The import's JSON-Schema fast path: a plain-Python predicate that only ever says "valid" when
jsonschema (Draft 2020-12) says so; everything else is left to jsonschema."""

from __future__ import annotations

import itertools

import pytest
from jsonschema import Draft202012Validator

from apps.devices.import_rows import VersionInfo
from apps.devices.import_schema import fast_check

SCHEMAS = {
    "empty": {},
    "object": {"type": "object"},
    "bench": {
        "type": "object",
        "properties": {"n": {"type": "integer"}, "color": {"enum": ["red", "blue"]}},
        "additionalProperties": False,
    },
    "bounds": {
        "type": "object",
        "required": ["a"],
        "properties": {
            "a": {"type": ["string", "null"], "minLength": 2, "maxLength": 3},
            "b": {"type": "number", "minimum": 0, "exclusiveMaximum": 10},
            "c": {"const": True},
            "d": {"type": "boolean", "title": "D", "description": "flag"},
        },
    },
    "extra-schema": {
        "properties": {"x": {"enum": [1, "1", None, [1]]}},
        "additionalProperties": {"type": "string"},
    },
}
VALUES = [None, True, False, 0, 1, 1.0, 1.5, -1, 10, 9.99, "", "a", "ab", "abcd", "red", [1], {}]
KEYS = ["a", "b", "c", "d", "n", "color", "x", "zz"]


def instances() -> list[dict[str, object]]:
    found: list[dict[str, object]] = [{}]
    for key, other in itertools.product(KEYS, KEYS):
        for value in VALUES:
            found.append({key: value} if key == other else {key: value, other: "red"})
    return found


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_the_fast_path_never_accepts_what_jsonschema_refuses(name):
    schema = SCHEMAS[name]
    check, reference = fast_check(schema), Draft202012Validator(schema)
    assert check is not None
    unsound = [i for i in instances() if check(i) and not reference.is_valid(i)]
    assert unsound == []
    missed = [i for i in instances() if not check(i) and reference.is_valid(i)]
    # only the cases it leaves to jsonschema on purpose: 1.0 == 1 and [1] in an enum
    assert all(any(v in (1.0, [1]) or v == 1 for v in i.values()) for i in missed), missed


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "patternProperties": {"^a": {"type": "string"}}},
        {"type": "object", "properties": {"x": {"type": "array", "items": {"type": "string"}}}},
        {"type": "object", "properties": {"x": {"multipleOf": 0.1}}},
        {"$ref": "#/$defs/x", "$defs": {"x": {"type": "object"}}},
        {"type": "strange"},
        {"minimum": True},
    ],
)
def test_schemas_outside_the_subset_are_left_to_jsonschema(schema):
    assert fast_check(schema) is None


def test_errors_are_worded_by_jsonschema_as_before():
    version = VersionInfo(id=None, manufacturer_id=None, schema=SCHEMAS["bench"])  # type: ignore[arg-type]
    assert version.errors({"n": 3, "color": "red"}) == []
    assert version.errors({"n": "3", "color": "green", "extra": 1}) == [
        "attributes: Additional properties are not allowed ('extra' was unexpected)",
        "attributes.color: 'green' is not one of ['red', 'blue']",
        "attributes.n: '3' is not of type 'integer'",
    ]
    assert version.errors({"n": 1.0}) == []  # jsonschema's answer where the fast path is unsure
