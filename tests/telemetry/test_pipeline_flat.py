"""The pipeline's shortcut through the normalizer gives exactly ``normalize``'s result."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from apps.profiles.normalizer import Normalized, compile_schema, normalize
from apps.telemetry.pipeline.flat import normalize_fast, plan_for

NAMES = ["a", "b", "c", "d"]
raw_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([-0.0, 0.0, 0.1 + 0.2, 1e-320, 123456789.123456789, 2**53 + 1]),
    st.text(max_size=5),
    st.sampled_from(["1", "2.5", "true", "off", " 3 "]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.sampled_from(NAMES), st.integers(), max_size=2),
)


@st.composite
def flat_schemas(draw: st.DrawFn) -> dict[str, Any]:
    metrics = []
    for index, source in enumerate(draw(st.lists(st.sampled_from(NAMES), unique=True))):
        kind = draw(st.sampled_from(["float", "int", "bool", "string"]))
        metric: dict[str, Any] = {"name": f"m{index}", "type": kind, "source": source}
        if kind in ("float", "int"):
            bounds = sorted(draw(st.lists(st.integers(-100, 100), min_size=2, max_size=2)))
            if draw(st.booleans()):
                metric["min"] = bounds[0]
            if draw(st.booleans()):
                metric["max"] = bounds[1]
        metrics.append(metric)
    return {"metrics": metrics}


def exact(result: Normalized) -> tuple[Any, ...]:
    """Everything, including types and the sign of zero (``-0.0 == 0.0`` would hide it)."""

    def plain(values: dict[str, Any]) -> list[tuple[str, str, str]]:
        return sorted((key, type(value).__name__, repr(value)) for key, value in values.items())

    return plain(result.metrics), plain(result.unknown), result.errors


@settings(max_examples=500, deadline=None)
@example(schema={"metrics": [{"name": "z", "source": "a"}]}, payload={"a": -0.0})  # sign of 0
@example(schema={"metrics": [{"name": "z", "source": "a"}]}, payload={"a": 0.1 + 0.2})  # 12 digits
@given(schema=flat_schemas(), payload=st.dictionaries(st.sampled_from([*NAMES, "x"]), raw_values))
def test_the_shortcut_equals_normalize(schema: dict[str, Any], payload: dict[str, Any]) -> None:
    compiled = compile_schema(schema)
    plan = plan_for(compiled)

    assert plan is not None
    assert exact(normalize_fast(payload, plan, compiled)) == exact(normalize(payload, compiled))


def test_a_schema_with_conversions_or_nested_sources_has_no_shortcut() -> None:
    for metric in (
        {"name": "t", "convert": {"from": "°F", "to": "°C"}, "unit": "°C"},
        {"name": "v", "convert": {"scale": 0.001}},
        {"name": "t", "source": "env.temp"},
    ):
        assert plan_for(compile_schema({"metrics": [metric]})) is None
    shared = {"metrics": [{"name": "a", "source": "x"}, {"name": "b", "source": "x"}]}
    assert plan_for(compile_schema(shared)) is None
