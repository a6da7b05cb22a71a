"""The telemetry normalizer: exact examples and properties (hypothesis)."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.profiles.normalizer import (
    UNITS,
    Normalized,
    compile_schema,
    convert_unit,
    normalize,
    validate_schema,
)

SCHEMA = {
    "metrics": [
        {
            "name": "temperature",
            "type": "float",
            "unit": "°C",
            "source": "env.temp_f",
            "convert": {"from": "°F", "to": "°C"},
            "min": -40,
            "max": 125,
        },
        {"name": "battery", "type": "float", "unit": "V", "convert": {"from": "mV"}},
        {"name": "rssi", "type": "int", "source": "radio.rssi"},
        {"name": "door_open", "type": "bool", "source": "door"},
        {"name": "firmware", "type": "string", "source": "fw"},
        {"name": "current", "type": "float", "convert": {"scale": 0.1, "offset": 1}},
    ]
}


# --- examples ----------------------------------------------------------------------------------


def test_it_renames_extracts_converts_and_coerces():
    payload = {
        "env": {"temp_f": "212", "humidity": 40},
        "battery": 3300,
        "radio": {"rssi": "-70"},
        "door": "TRUE",
        "fw": 1.2,
        "current": 25,
        "boot": 7,
    }
    assert normalize(payload, SCHEMA) == Normalized(
        metrics={
            "temperature": 100.0,
            "battery": 3.3,
            "rssi": -70,
            "door_open": True,
            "firmware": "1.2",
            "current": 3.5,
        },
        unknown={"env": {"humidity": 40}, "boot": 7},
        errors=[],
    )


def test_it_turns_bad_values_into_errors_and_keeps_them_raw():
    payload = {
        "env": {"temp_f": 500},
        "battery": "flat",
        "radio": {"rssi": 1.5},
        "door": 2,
        "fw": None,
        "current": float("nan"),
    }
    result = normalize(payload, SCHEMA)
    assert result.metrics == {}
    assert result.errors == [
        "temperature: 260.0 is above the maximum 125",
        "battery: 'flat' is not a number",
        "rssi: 1.5 is not an integer",
        "door_open: 2 is not a boolean",
        "firmware: null is not a value",
        "current: nan is not a finite number",
    ]
    assert result.unknown == payload | {"current": result.unknown["current"]}
    assert math.isnan(result.unknown["current"])


def test_it_reports_nothing_for_an_absent_metric():
    assert normalize({"radio": "not an object"}, SCHEMA) == Normalized(
        metrics={}, unknown={"radio": "not an object"}, errors=[]
    )


def test_it_refuses_a_payload_that_is_not_an_object():
    assert normalize(["a"], SCHEMA) == Normalized(  # type: ignore[arg-type]
        metrics={}, unknown={}, errors=["payload: list is not an object"]
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("Off", False), (1, True), (0.0, False), ("yes", True), (False, False)],
)
def test_it_coerces_booleans(raw, expected):
    schema = {"metrics": [{"name": "on", "type": "bool"}]}
    assert normalize({"on": raw}, schema).metrics == {"on": expected}


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (0, "°C", "K", 273.15),
        (32, "°F", "°C", 0.0),
        (1.5, "kWh", "Wh", 1500.0),
        (2, "h", "min", 120.0),
        (90, "min", "s", 5400.0),
        (1013.25, "hPa", "kPa", 101.325),
        (1, "bar", "psi", 14.503773773),
        (50, "%", "ratio", 0.5),
        (1.2, "km", "m", 1200.0),
        (250, "mA", "A", 0.25),
    ],
)
def test_it_converts_units(value, source, target, expected):
    assert convert_unit(value, source, target) == pytest.approx(expected, rel=1e-9)


def test_an_int_metric_is_rounded_after_conversion():
    uptime = {"name": "uptime", "type": "int", "unit": "s", "convert": {"from": "ms"}}
    schema = {"metrics": [uptime]}
    assert normalize({"uptime": "1600"}, schema).metrics == {"uptime": 2}


def test_an_unconverted_float_is_kept_exactly_as_sent_and_a_converted_one_to_12_digits():
    schema = {
        "metrics": [
            {"name": "latitude", "type": "float"},
            {"name": "volts", "type": "float", "convert": {"scale": 0.001}},
        ]
    }
    found = normalize({"latitude": 52.52000812345678, "volts": 3300, "zero": -0.0}, schema)
    assert found.metrics == {"latitude": 52.52000812345678, "volts": 3.3}
    found = normalize({"latitude": -0.0}, schema)
    assert repr(found.metrics["latitude"]) == "0.0"


def test_it_validates_a_schema():
    schema = {
        "metrics": [
            {"name": "a", "type": "decimal"},
            {"name": "b", "convert": {"from": "furlong", "to": "m"}},
            {"name": "c", "unit": "°C", "convert": {"from": "V"}},
            {"name": "a"},
            {"name": "d", "type": "bool", "min": 0},
            {"name": "e", "min": 5, "max": 1, "colour": "red"},
            {"name": "bad name"},
            {"name": "f", "source": "a..b"},
        ],
        "extra": 1,
    }
    assert validate_schema(schema) == [
        "unknown key 'extra'.",
        "metrics[0] (a): unknown type 'decimal'.",
        "metrics[1] (b): unknown unit 'furlong'.",
        "metrics[2] (c): cannot convert V to °C.",
        "metrics[3] (a): duplicate name.",
        "metrics[4] (d): min and max apply to float and int metrics only.",
        "metrics[5] (e): unknown key 'colour'.",
        "metrics[5] (e): min is greater than max.",
        "metrics[6]: name must be letters, digits and _ (at most 64).",
        "metrics[7] (f): source must be a dotted path such as env.temp.",
    ]
    assert validate_schema(SCHEMA) == []
    assert validate_schema([]) == ["The telemetry schema must be an object."]


def test_normalize_refuses_an_invalid_schema():
    with pytest.raises(ValueError, match=r"^invalid telemetry schema: metrics\[0\]: name must"):
        normalize({}, {"metrics": [{"name": ""}]})


# --- properties --------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
payloads = st.dictionaries(
    st.sampled_from(["env", "battery", "radio", "door", "fw", "current", "x", "y"]) | st.text(),
    json_values,
    max_size=8,
)
COMPILED = compile_schema(SCHEMA)


@given(payloads)
@settings(max_examples=300)
def test_normalizing_never_raises_and_is_deterministic(payload):
    first = normalize(payload, COMPILED)
    second = normalize(payload, SCHEMA)
    assert repr(first) == repr(second)


def canonical(value):
    """Comparable form of a payload: NaN equals NaN, key order does not matter."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, dict):
        return sorted((key, canonical(item)) for key, item in value.items())
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return (type(value).__name__, value)


def put(target, path, value):
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


@given(payloads)
@settings(max_examples=300)
def test_no_field_is_ever_dropped(payload):
    """The consumed raw values put back into ``unknown`` give the payload back exactly."""
    result = normalize(payload, COMPILED)
    rebuilt = copy.deepcopy(result.unknown)
    for metric in COMPILED.metrics:
        if metric.name in result.metrics:
            raw = payload
            for key in metric.path:
                raw = raw[key]
            put(rebuilt, metric.path, raw)
    assert canonical(rebuilt) == canonical(payload)
    assert set(result.unknown) <= set(payload)


@given(payloads)
@settings(max_examples=300)
def test_a_metric_is_reported_or_its_value_refused_exactly_once(payload):
    result = normalize(payload, COMPILED)
    reported = list(result.metrics)
    refused = [error.split(":", 1)[0] for error in result.errors]
    assert len(reported) == len(set(reported))
    assert set(reported).isdisjoint(refused)
    assert len(refused) == len(set(refused))


float_values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(float_values)
def test_celsius_to_fahrenheit_and_back_round_trips(value):
    there = convert_unit(value, "°C", "°F")
    assert convert_unit(there, "°F", "°C") == pytest.approx(value, abs=1e-6)


@given(float_values, st.sampled_from(sorted(UNITS)), st.data())
def test_every_conversion_round_trips_within_its_dimension(value, unit, data):
    dimension = UNITS[unit][0]
    other = data.draw(st.sampled_from(sorted(u for u in UNITS if UNITS[u][0] == dimension)))
    back = convert_unit(convert_unit(value, unit, other), other, unit)
    assert back == pytest.approx(value, rel=1e-9, abs=1e-6)


@given(st.floats(min_value=-40, max_value=125, allow_nan=False).map(lambda v: round(v, 3)))
def test_a_valid_value_appears_exactly_once_in_metrics(celsius):
    fahrenheit = convert_unit(celsius, "°C", "°F")
    result = normalize({"env": {"temp_f": str(fahrenheit)}}, COMPILED)
    assert list(result.metrics) == ["temperature"]
    assert result.metrics["temperature"] == pytest.approx(celsius, abs=1e-9)
    assert (result.unknown, result.errors) == ({}, [])
