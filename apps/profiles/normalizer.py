"""Telemetry normalization: a raw device payload in, normalized metrics out. Pure (no Django).

A profile version's telemetry schema lists the metrics a device of that kind reports::

    {"metrics": [
        {"name": "temperature",          # the normalized name (letters, digits, _; unique)
         "type": "float",                # "float" (default) | "int" | "bool" | "string"
         "unit": "°C",                   # the unit of the normalized value (a label)
         "source": "env.temp_f",         # dotted path into the payload (default: the name)
         "convert": {"from": "°F", "to": "°C"},   # or {"scale": 0.1, "offset": 0}
         "min": -40, "max": 125},        # optional range of the normalized value
    ]}

Rules, in order, for each metric whose ``source`` is present in the payload:

1. extraction: ``source`` is split on dots and followed through nested objects;
2. type coercion of the raw value: numbers from numbers or numeric text (``"23.5"``); ``int``
   accepts integral values only; ``bool`` from ``true``/``false`` (any case), ``yes``/``no``,
   ``on``/``off``, ``1``/``0``; ``string`` from text, numbers (``23.5`` -> ``"23.5"``) and
   booleans (``"true"``). ``null``, objects, lists, NaN and infinities are refused;
3. unit conversion (numeric types only): ``{"from": u, "to": v}`` between units of one
   dimension in ``UNITS`` (``to`` defaults to the metric's ``unit``), or a linear
   ``{"scale": a, "offset": b}`` (``value * a + b``). A converted value keeps 12 significant
   digits (an unconverted one is kept exactly as sent: a coordinate's 15 digits stay); an
   ``int`` metric is then rounded to the nearest integer;
4. range check against ``min`` / ``max``.

A value that fails any step adds one message to ``errors`` (never an exception) and is not
consumed: its raw value stays in ``unknown``. ``unknown`` holds everything no metric consumed,
with nested objects reduced to their unconsumed keys, so every raw field ends up either in
``metrics`` or in ``unknown`` and nothing is dropped. A metric whose source is absent is simply
not reported. ``validate_schema`` checks a schema; ``compile_schema`` turns a valid one into
the form ``normalize`` runs (``normalize`` accepts either and raises ``ValueError`` for an
invalid schema, a programming error rather than bad device input).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "TYPES",
    "UNITS",
    "CompiledMetric",
    "CompiledSchema",
    "Normalized",
    "compile_schema",
    "convert_unit",
    "normalize",
    "validate_schema",
]

Value = float | int | bool | str
TYPES = ("float", "int", "bool", "string")
NUMERIC = ("float", "int")
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
METRIC_KEYS = {"name", "type", "unit", "source", "convert", "min", "max", "description"}
TRUE = {"true", "yes", "on", "1"}
FALSE = {"false", "no", "off", "0"}

# unit -> (dimension, factor, offset): value in the dimension's base unit = value * factor + offset
UNITS: dict[str, tuple[str, float, float]] = {
    "°C": ("temperature", 1.0, 0.0),
    "°F": ("temperature", 5 / 9, -160 / 9),
    "K": ("temperature", 1.0, -273.15),
    "V": ("voltage", 1.0, 0.0),
    "mV": ("voltage", 1e-3, 0.0),
    "A": ("current", 1.0, 0.0),
    "mA": ("current", 1e-3, 0.0),
    "Wh": ("energy", 1.0, 0.0),
    "kWh": ("energy", 1e3, 0.0),
    "m": ("length", 1.0, 0.0),
    "km": ("length", 1e3, 0.0),
    "s": ("time", 1.0, 0.0),
    "ms": ("time", 1e-3, 0.0),
    "min": ("time", 60.0, 0.0),
    "h": ("time", 3600.0, 0.0),
    "ratio": ("ratio", 1.0, 0.0),
    "%": ("ratio", 1e-2, 0.0),
    "Pa": ("pressure", 1.0, 0.0),
    "hPa": ("pressure", 1e2, 0.0),
    "kPa": ("pressure", 1e3, 0.0),
    "bar": ("pressure", 1e5, 0.0),
    "psi": ("pressure", 6894.757293168361, 0.0),
}


@dataclass
class Normalized:
    metrics: dict[str, Value] = field(default_factory=dict)
    unknown: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CompiledMetric:
    name: str
    type: str
    path: tuple[str, ...]
    scale: float = 1.0
    offset: float = 0.0
    from_unit: str | None = None
    to_unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None


@dataclass(frozen=True)
class CompiledSchema:
    metrics: tuple[CompiledMetric, ...]


class _Refused(Exception):
    """A value that fails a rule; its message goes to ``Normalized.errors``."""


# --- units -------------------------------------------------------------------------------------


def convert_unit(value: float, from_unit: str, to_unit: str) -> float:
    """Convert between two units of the same dimension (``KeyError`` / ``ValueError`` if not)."""
    from_dimension, from_factor, from_offset = UNITS[from_unit]
    to_dimension, to_factor, to_offset = UNITS[to_unit]
    if from_dimension != to_dimension:
        raise ValueError(f"cannot convert {from_unit} ({from_dimension}) to {to_unit}")
    if from_unit == to_unit:
        return value
    base = value * from_factor + from_offset
    return (base - to_offset) / to_factor


# --- schema validation -------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_convert(label: str, metric: Mapping[str, Any], convert: Any) -> list[str]:
    if metric.get("type", "float") not in NUMERIC:
        return [f"{label}: convert applies to float and int metrics only."]
    if not isinstance(convert, Mapping):
        return [f"{label}: convert must be an object."]
    if "from" in convert:
        unknown = sorted(set(convert) - {"from", "to"})
        if unknown:
            return [f"{label}: unknown convert key(s) {', '.join(unknown)}."]
        target = convert.get("to", metric.get("unit"))
        for unit in (convert["from"], target):
            if not isinstance(unit, str) or unit not in UNITS:
                return [f"{label}: unknown unit {unit!r}."]
        if UNITS[convert["from"]][0] != UNITS[target][0]:
            return [f"{label}: cannot convert {convert['from']} to {target}."]
        if "unit" in metric and metric["unit"] != target:
            return [f"{label}: convert.to ({target}) differs from unit ({metric['unit']})."]
        return []
    unknown = sorted(set(convert) - {"scale", "offset"})
    if unknown or "scale" not in convert:
        return [f"{label}: convert needs from/to units or a scale (and optional offset)."]
    if not all(_is_number(convert.get(key, 0)) for key in ("scale", "offset")):
        return [f"{label}: scale and offset must be finite numbers."]
    return []


def _check_range(label: str, metric: Mapping[str, Any]) -> list[str]:
    bounds = [key for key in ("min", "max") if key in metric]
    if not bounds:
        return []
    if metric.get("type", "float") not in NUMERIC:
        return [f"{label}: min and max apply to float and int metrics only."]
    if not all(_is_number(metric[key]) for key in bounds):
        return [f"{label}: min and max must be finite numbers."]
    if len(bounds) == 2 and metric["min"] > metric["max"]:
        return [f"{label}: min is greater than max."]
    return []


def _check_metric(index: int, metric: Any) -> list[str]:
    if not isinstance(metric, Mapping):
        return [f"metrics[{index}]: must be an object."]
    name = metric.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        return [f"metrics[{index}]: name must be letters, digits and _ (at most 64)."]
    label = f"metrics[{index}] ({name})"
    errors = [f"{label}: unknown key {key!r}." for key in sorted(set(metric) - METRIC_KEYS)]
    if metric.get("type", "float") not in TYPES:
        errors.append(f"{label}: unknown type {metric.get('type')!r}.")
        return errors
    for key in ("unit", "description"):
        if key in metric and not isinstance(metric[key], str):
            errors.append(f"{label}: {key} must be text.")
    source = metric.get("source", name)
    if not isinstance(source, str) or not all(source.split(".")):
        errors.append(f"{label}: source must be a dotted path such as env.temp.")
    if "convert" in metric:
        errors += _check_convert(label, metric, metric["convert"])
    errors += _check_range(label, metric)
    return errors


def validate_schema(schema: Any) -> list[str]:
    """Every problem with a telemetry schema (empty when it is valid)."""
    if not isinstance(schema, Mapping):
        return ["The telemetry schema must be an object."]
    errors = [f"unknown key {key!r}." for key in sorted(set(schema) - {"metrics"})]
    metrics = schema.get("metrics", [])
    if not isinstance(metrics, list):
        return [*errors, "metrics must be a list."]
    seen: set[str] = set()
    for index, metric in enumerate(metrics):
        errors += _check_metric(index, metric)
        name = metric.get("name") if isinstance(metric, Mapping) else None
        if isinstance(name, str):
            if name in seen:
                errors.append(f"metrics[{index}] ({name}): duplicate name.")
            seen.add(name)
    return errors


def _compile_metric(metric: Mapping[str, Any]) -> CompiledMetric:
    convert = metric.get("convert") or {}
    has_units = "from" in convert
    return CompiledMetric(
        name=metric["name"],
        type=metric.get("type", "float"),
        path=tuple(metric.get("source", metric["name"]).split(".")),
        scale=float(convert.get("scale", 1.0)),
        offset=float(convert.get("offset", 0.0)),
        from_unit=convert["from"] if has_units else None,
        to_unit=convert.get("to", metric.get("unit")) if has_units else None,
        minimum=metric.get("min"),
        maximum=metric.get("max"),
    )


def compile_schema(schema: Mapping[str, Any]) -> CompiledSchema:
    """The runnable form of a valid schema; ``ValueError`` listing the problems otherwise."""
    errors = validate_schema(schema)
    if errors:
        raise ValueError("invalid telemetry schema: " + " ".join(errors))
    return CompiledSchema(metrics=tuple(_compile_metric(m) for m in schema.get("metrics", [])))


# --- normalization -----------------------------------------------------------------------------


def _number(raw: Any) -> float | int:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise _Refused(f"{raw!r} is not a number")
    number: float | int = raw  # type: ignore[assignment]
    if isinstance(raw, str):
        text = raw.strip()
        try:
            number = int(text) if text.lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise _Refused(f"{raw!r} is not a number") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise _Refused(f"{raw!r} is not a finite number")
    return number


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower() if isinstance(raw, (str, int, float)) else None
    if isinstance(raw, float) and raw in (0.0, 1.0):
        text = str(int(raw))
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise _Refused(f"{raw!r} is not a boolean")


def _text(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, str):
        return raw
    if isinstance(raw, int) or (isinstance(raw, float) and math.isfinite(raw)):
        return repr(raw)
    raise _Refused(f"{raw!r} is not text")


def _scaled(metric: CompiledMetric, number: float | int, raw: Any) -> float | int:
    """Unit conversion and scaling; an ``int`` metric without either stays exact."""
    identity = metric.from_unit is None and metric.scale == 1.0 and metric.offset == 0.0
    if identity and metric.type == "int":
        return number
    try:
        value = float(number)
        if metric.from_unit is not None and metric.to_unit is not None:
            value = convert_unit(value, metric.from_unit, metric.to_unit)
        value = value * metric.scale + metric.offset
    except OverflowError:
        raise _Refused(f"{raw!r} is out of range") from None
    if not math.isfinite(value):
        raise _Refused(f"{raw!r} is out of range")
    if not identity:  # drop binary noise: 3300 mV -> 3.3 V, not 3.3000000000000003
        value = float(f"{value:.12g}")
    return round(value) if metric.type == "int" else value


def _numeric(metric: CompiledMetric, raw: Any) -> float | int:
    number = _number(raw)
    if metric.type == "int" and isinstance(number, float):
        if not number.is_integer():
            raise _Refused(f"{raw!r} is not an integer")
        number = int(number)
    result = _scaled(metric, number, raw)
    if metric.minimum is not None and result < metric.minimum:
        raise _Refused(f"{result} is below the minimum {metric.minimum}")
    if metric.maximum is not None and result > metric.maximum:
        raise _Refused(f"{result} is above the maximum {metric.maximum}")
    return result


def _coerce(metric: CompiledMetric, raw: Any) -> Value:
    if raw is None:
        raise _Refused("null is not a value")
    if metric.type == "bool":
        return _boolean(raw)
    if metric.type == "string":
        return _text(raw)
    return _numeric(metric, raw)


_MISSING = object()


def _extract(payload: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = payload
    for key in path:
        if not isinstance(current, Mapping) or key not in current:
            return _MISSING
        current = current[key]
    return current


def _remainder(value: Any, consumed: set[tuple[str, ...]], prefix: tuple[str, ...]) -> Any:
    """``value`` without the consumed paths below ``prefix``; ``_MISSING`` when nothing is left
    of an object that was only partly consumed."""
    if prefix in consumed:
        return _MISSING
    depth = len(prefix)
    if not isinstance(value, Mapping) or not any(
        len(path) > depth and path[:depth] == prefix for path in consumed
    ):
        return value
    kept = {}
    for key, item in value.items():
        rest = _remainder(item, consumed, (*prefix, key))
        if rest is not _MISSING:
            kept[key] = rest
    return kept if kept else _MISSING


def normalize(payload: Mapping[str, Any], schema: Mapping[str, Any] | CompiledSchema) -> Normalized:
    """Apply ``schema``'s rules to ``payload``: normalized metrics, unknown fields, errors."""
    compiled = schema if isinstance(schema, CompiledSchema) else compile_schema(schema)
    if not isinstance(payload, Mapping):
        return Normalized(errors=[f"payload: {type(payload).__name__} is not an object"])
    result = Normalized()
    consumed: set[tuple[str, ...]] = set()
    for metric in compiled.metrics:
        raw = _extract(payload, metric.path)
        if raw is _MISSING:
            continue
        try:
            result.metrics[metric.name] = _coerce(metric, raw)
        except _Refused as refused:
            result.errors.append(f"{metric.name}: {refused}")
            continue
        consumed.add(metric.path)
    for key, value in payload.items():
        rest = _remainder(value, consumed, (str(key),))
        if rest is not _MISSING:
            result.unknown[str(key)] = rest
    return result
