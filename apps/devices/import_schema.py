"""The import's JSON-Schema fast path.

A profile version's schema written in the common subset (``type``, ``properties``,
``additionalProperties``, ``required``, ``enum``, ``const``, numeric bounds, string lengths;
``title``/``description``/``default``/``examples``/``$comment``/``format`` ignored, as jsonschema
does without a format checker) compiles to a plain Python predicate that only ever answers
"valid" where jsonschema (Draft 2020-12) does. "Not valid", and any schema outside the subset,
go to jsonschema, which words the errors.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from functools import partial
from typing import Any

Check = Callable[[Any], bool]
_IGNORED = frozenset({"title", "description", "default", "examples", "$comment", "format"})
_PYTHON_TYPES: dict[str, Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool))
        or (isinstance(v, float) and v.is_integer())
    ),
}
_SCALARS = (str, int, float, bool, type(None))


def _constant(answer: bool, value: Any) -> bool:
    return answer


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _one_of(choices: list[Any]) -> Check:
    """Strict membership (same Python type and equal): ``True`` is never taken for ``1``."""
    allowed = {(type(c), c) for c in choices if isinstance(c, _SCALARS)}
    return lambda v: isinstance(v, _SCALARS) and (type(v), v) in allowed


def _bounds(schema: dict[str, Any]) -> list[Check]:
    checks: list[Check] = []
    for key, holds in _NUMBER_BOUNDS:
        if key in schema:
            if not _is_number(bound := schema[key]):
                raise ValueError(key)
            checks.append(partial(_number_within, holds, bound))
    for key, holds in _LENGTH_BOUNDS:
        if key in schema:
            length = schema[key]
            if not isinstance(length, int) or isinstance(length, bool):
                raise ValueError(key)
            checks.append(partial(_length_within, holds, length))
    return checks


_NUMBER_BOUNDS = (
    ("minimum", operator.ge),
    ("maximum", operator.le),
    ("exclusiveMinimum", operator.gt),
    ("exclusiveMaximum", operator.lt),
)
_LENGTH_BOUNDS = (("minLength", operator.ge), ("maxLength", operator.le))


def _number_within(holds: Callable[[Any, Any], bool], bound: Any, value: Any) -> bool:
    return not _is_number(value) or holds(value, bound)


def _length_within(holds: Callable[[Any, Any], bool], bound: int, value: Any) -> bool:
    return not isinstance(value, str) or holds(len(value), bound)


def _object_checks(schema: dict[str, Any]) -> list[Check]:
    properties = {name: _compile(sub) for name, sub in schema.get("properties", {}).items()}
    extra = schema.get("additionalProperties", True)
    other = _compile(extra)
    required = list(schema.get("required", []))

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        for name, item in value.items():
            if not properties.get(name, other)(item):
                return False
        return all(name in value for name in required)

    return [check] if properties or extra is not True or required else []


def _compile(schema: Any) -> Check:
    """Raises ``ValueError`` (or a ``TypeError``/``AttributeError``) outside the subset."""
    if schema is True or schema is False:
        return partial(_constant, schema)
    unknown = set(schema) - _IGNORED - {
        "type", "enum", "const", "properties", "additionalProperties", "required",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength",
    }  # fmt: skip
    if unknown:
        raise ValueError(sorted(unknown))
    checks: list[Check] = []
    if "type" in schema:
        names = [schema["type"]] if isinstance(schema["type"], str) else schema["type"]
        kinds = [_PYTHON_TYPES[name] for name in names]
        checks.append(kinds[0] if len(kinds) == 1 else lambda v: any(k(v) for k in kinds))
    if "enum" in schema:
        checks.append(_one_of(list(schema["enum"])))
    if "const" in schema:
        checks.append(_one_of([schema["const"]]))
    checks += _bounds(schema) + _object_checks(schema)
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda v: first(v) and second(v)
    return lambda v: all(check(v) for check in checks)


def fast_check(schema: Any) -> Check | None:
    """A predicate that answers True only when jsonschema (Draft 2020-12) accepts the value (False
    also means "ask jsonschema"), or None when the schema is outside the compiled subset."""
    try:
        return _compile(schema)
    except (ValueError, TypeError, AttributeError, KeyError):
        return None
