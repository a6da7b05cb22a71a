"""In-batch evaluation (``evaluate_batch``) as tables: each case feeds samples one batch at a
time (``now`` = the sample's time, as a pipeline keeping up would) and states the exact alerts
that result. Real PostgreSQL; rules go through the rule services."""

from __future__ import annotations

from typing import Any

import pytest

from apps.devices.choices import DeviceState
from apps.telemetry.alerting import evaluate_batch
from apps.telemetry.choices import SampleKind
from apps.telemetry.models import Alert

from .alert_support import (
    alert_audit,
    alert_events,
    alerts,
    at,
    condition,
    event,
    fresh_alert_cache,  # noqa: F401
    make_rule,
    sample,
)
from .conftest import make_device

OPEN, RESOLVED = "open", "resolved"


def _alerts() -> list[Alert]:
    return list(Alert.objects.select_related("rule", "device"))


@pytest.fixture
def thermo(tree, telemetry_version):
    return make_device(telemetry_version, tree["acme"])


def feed(device: Any, steps: list[tuple[float, Any]], metric: str = "temperature") -> list[Any]:
    """One batch per step (seconds, value or (value, device state)); the (opened, resolved)
    of each."""
    counts = []
    for seconds, value in steps:
        state = None
        if isinstance(value, tuple):
            value, state = value
        batch = [sample(device, at(seconds), state=state, **{metric: value})]
        counts.append(evaluate_batch(batch, [], at(seconds)))
    return counts


def timeline(device: Any) -> list[tuple[str, float, float | None]]:
    """(status, opened at, resolved at) of the device's alerts, in seconds after T0."""
    return [
        (status, (opened - at(0)).total_seconds(), (res - at(0)).total_seconds() if res else None)
        for _, status, opened, res in alerts()
        if _ == device.serial
    ]


# --- thresholds and ranges ---------------------------------------------------------------------

THRESHOLDS = [
    # operator, bound, a value that holds still, a value that breaches
    ("gt", 80, 80, 80.5),
    ("gte", 80, 79.9, 80),
    ("lt", 10, 10, 9),
    ("lte", 10, 10.1, 10),
    ("eq", "error", "ok", "error"),
    ("ne", True, True, False),
    ("eq", 3, 2, 3),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("operator", "bound", "quiet", "breach"), THRESHOLDS)
def test_each_threshold_operator_opens_exactly_on_the_breaching_value(
    tree, thermo, operator, bound, quiet, breach
):
    make_rule(
        tree["acme"], condition={"metric": "temperature", "operator": operator, "value": bound}
    )

    assert feed(thermo, [(0, quiet), (10, breach)]) == [(0, 0), (1, 0)]
    assert timeline(thermo) == [(OPEN, 10, None)]


@pytest.mark.django_db
@pytest.mark.parametrize("value", [True, "85", None])
def test_a_value_of_another_type_says_nothing(tree, thermo, value):
    rule = make_rule(tree["acme"])  # temperature > 80

    assert feed(thermo, [(0, value)]) == [(0, 0)]
    assert alerts() == []
    assert condition(rule, thermo) is None  # never even observed


RANGES = [
    # inside, values (each a batch), expected counts, expected alerts
    (False, [20, 10, 30, 31, 25], [(0, 0), (0, 0), (0, 0), (1, 0), (0, 1)], [(RESOLVED, 30, 40)]),
    (False, [9.5, 20], [(1, 0), (0, 1)], [(RESOLVED, 0, 10)]),
    (True, [5, 10, 30, 31], [(0, 0), (1, 0), (0, 0), (0, 1)], [(RESOLVED, 10, 30)]),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("inside", "values", "counts", "expected"), RANGES)
def test_range_rules_alert_outside_or_inside_the_bounds_inclusive(
    tree, thermo, inside, values, counts, expected
):
    make_rule(
        tree["acme"], "range", {"metric": "temperature", "low": 10, "high": 30, "inside": inside}
    )

    assert feed(thermo, [(10 * i, v) for i, v in enumerate(values)]) == counts
    assert timeline(thermo) == expected


@pytest.mark.django_db
def test_rules_on_vitals_see_heartbeat_samples(tree, thermo):
    make_rule(tree["acme"], condition={"metric": "battery_pct", "operator": "lt", "value": 20})
    heartbeat = sample(thermo, at(0), kind=SampleKind.HEARTBEAT, battery_pct=12.5)

    assert evaluate_batch([heartbeat], [], at(0)) == (1, 0)
    assert [a[1] for a in alerts()] == [OPEN]


# --- damping: open after, clear after, flapping ------------------------------------------------

T, F = 85, 70  # above / below temperature > 80
DAMPING = [
    pytest.param(
        0,
        0,
        [(0, T), (10, F), (20, T), (30, F)],
        [(1, 0), (0, 1), (1, 0), (0, 1)],
        [(RESOLVED, 0, 10), (RESOLVED, 20, 30)],
        id="no damping: every flap is an alert",
    ),
    pytest.param(
        60,
        0,
        [(0, T), (30, T), (59, T), (60, T), (70, T)],
        [(0, 0), (0, 0), (0, 0), (1, 0), (0, 0)],
        [(OPEN, 60, None)],
        id="open after 60 s: opens on the first sample 60 s into the breach",
    ),
    pytest.param(
        60,
        0,
        [(0, T), (30, F), (40, T), (90, T), (100, T)],
        [(0, 0), (0, 0), (0, 0), (0, 0), (1, 0)],
        [(OPEN, 100, None)],
        id="open after: a clear sample restarts the wait",
    ),
    pytest.param(
        0,
        60,
        [(0, T), (10, F), (20, T), (30, F), (80, F), (85, T), (90, F), (150, F)],
        [(1, 0), (0, 0), (0, 0), (0, 0), (0, 0), (0, 0), (0, 0), (0, 1)],
        [(RESOLVED, 0, 150)],
        id="clear after 60 s: flapping stays one alert",
    ),
    pytest.param(
        60,
        120,
        [
            (0, T),
            (30, F),
            (40, T),
            (90, T),
            (100, T),
            (110, F),
            (150, T),
            (160, F),
            (250, F),
            (290, F),
        ],
        [(0, 0)] * 4 + [(1, 0)] + [(0, 0)] * 4 + [(0, 1)],
        [(RESOLVED, 100, 290)],
        id="both: one alert for a noisy excursion",
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("open_after", "clear_after", "steps", "counts", "expected"), DAMPING)
def test_damping_table(tree, thermo, open_after, clear_after, steps, counts, expected):
    make_rule(tree["acme"], open_after_seconds=open_after, clear_after_seconds=clear_after)

    assert feed(thermo, steps) == counts
    assert timeline(thermo) == expected


@pytest.mark.django_db
def test_the_condition_row_tracks_since_when(tree, thermo):
    rule = make_rule(tree["acme"], open_after_seconds=60, clear_after_seconds=120)

    feed(thermo, [(0, T), (30, T)])
    assert condition(rule, thermo) == (False, at(0), None, at(30))
    feed(thermo, [(60, T), (70, F)])
    assert condition(rule, thermo) == (True, None, at(70), at(70))


@pytest.mark.django_db
def test_a_whole_excursion_inside_one_batch_is_recorded_resolved(tree, thermo):
    make_rule(tree["acme"])
    batch = [sample(thermo, at(s), temperature=v) for s, v in [(0, 70), (10, 90), (20, 75)]]

    assert evaluate_batch(list(reversed(batch)), [], at(20)) == (1, 1)  # order of rows is free
    assert timeline(thermo) == [(RESOLVED, 10, 20)]
    assert [(kind, payload["status"]) for kind, payload in alert_events()] == [
        ("alert.opened", "open"),
        ("alert.resolved", "resolved"),
    ]


@pytest.mark.django_db
def test_without_auto_resolve_the_alert_waits_for_a_person_and_is_never_doubled(tree, thermo):
    rule = make_rule(tree["acme"], auto_resolve=False)

    assert feed(thermo, [(0, T), (10, F), (20, T), (30, F)]) == [(1, 0), (0, 0), (0, 0), (0, 0)]
    assert timeline(thermo) == [(OPEN, 0, None)]
    assert condition(rule, thermo)[0] is False


# --- maintenance -------------------------------------------------------------------------------

MAINT = DeviceState.MAINTENANCE
MAINTENANCE = [
    pytest.param(
        0,
        [(0, (T, MAINT)), (10, (T, MAINT))],
        [(0, 0), (0, 0)],
        [],
        id="in maintenance nothing opens",
    ),
    pytest.param(
        0,
        [(0, T), (10, (T, MAINT)), (20, (F, MAINT))],
        [(1, 0), (0, 0), (0, 1)],
        [(RESOLVED, 0, 20)],
        id="an open alert stays open in maintenance and resolves on clear data",
    ),
    pytest.param(
        60,
        [(0, (T, MAINT)), (50, (T, MAINT)), (60, T), (100, T), (120, T)],
        [(0, 0), (0, 0), (0, 0), (0, 0), (1, 0)],
        [(OPEN, 120, None)],
        id="time in maintenance does not count towards open after",
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("open_after", "steps", "counts", "expected"), MAINTENANCE)
def test_maintenance_table(tree, thermo, open_after, steps, counts, expected):
    make_rule(tree["acme"], open_after_seconds=open_after)

    assert feed(thermo, steps) == counts
    assert timeline(thermo) == expected


@pytest.mark.django_db
@pytest.mark.parametrize("state", [DeviceState.ESCROW, DeviceState.SUSPENDED])
def test_devices_out_of_service_are_not_evaluated(tree, thermo, state):
    rule = make_rule(tree["acme"])

    assert feed(thermo, [(0, (T, state))]) == [(0, 0)]
    assert condition(rule, thermo) is None


# --- late data and duplicates ------------------------------------------------------------------


@pytest.mark.django_db
def test_data_older_than_the_late_window_never_opens(tree, thermo, settings):
    settings.ALERT_LATE_DATA_SECONDS = 300
    rule = make_rule(tree["acme"])

    assert evaluate_batch([sample(thermo, at(0), temperature=T)], [], at(301)) == (0, 0)
    assert evaluate_batch([sample(thermo, at(1), temperature=T)], [], at(301)) == (1, 0)
    assert condition(rule, thermo) == (True, at(1), None, at(1))


@pytest.mark.django_db
def test_data_older_than_what_the_condition_saw_never_opens_or_clears(tree, thermo):
    rule = make_rule(tree["acme"])

    feed(thermo, [(100, F)])
    assert evaluate_batch([sample(thermo, at(50), temperature=T)], [], at(110)) == (0, 0)
    assert alerts() == []
    feed(thermo, [(120, T)])
    assert evaluate_batch([sample(thermo, at(115), temperature=F)], [], at(130)) == (0, 0)
    assert timeline(thermo) == [(OPEN, 120, None)]
    assert condition(rule, thermo) == (True, at(120), None, at(120))


@pytest.mark.django_db
def test_the_same_sample_evaluated_again_changes_nothing(tree, thermo):
    rule = make_rule(tree["acme"])
    breach = sample(thermo, at(0), temperature=T)

    assert evaluate_batch([breach], [], at(0)) == (1, 0)
    before = condition(rule, thermo)
    assert evaluate_batch([breach], [], at(5)) == (0, 0)
    assert condition(rule, thermo) == before
    assert len(alerts()) == 1


# --- events ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_event_match_opens_on_a_match_and_clears_on_the_clear_type(tree, thermo):
    make_rule(
        tree["acme"],
        "event_match",
        {"type": "door.*", "min_severity": "warning", "clear_type": "door.closed"},
    )
    steps = [
        event(thermo, at(0), "door.opened", "info"),  # below min_severity
        event(thermo, at(10), "door.forced", "error", "Door 2 forced"),
        event(thermo, at(20), "door.forced", "critical"),  # already open: de-duplicated
        event(thermo, at(30), "fan.stopped", "critical"),  # another type: says nothing
        event(thermo, at(40), "door.closed", "info"),
    ]

    counts = [evaluate_batch([], [step], step.ts) for step in steps]

    assert counts == [(0, 0), (1, 0), (0, 0), (0, 0), (0, 1)]
    assert timeline(thermo) == [(RESOLVED, 10, 40)]
    opened = alert_events()[0][1]
    assert opened["message"] == "door.forced: Door 2 forced"


# --- which devices a rule applies to -----------------------------------------------------------


@pytest.mark.django_db
def test_rules_apply_below_their_organization_never_above_or_beside(tree, telemetry_version):
    at_acme = make_device(telemetry_version, tree["acme"])
    at_store = make_device(telemetry_version, tree["store"])
    at_globex = make_device(telemetry_version, tree["globex"])
    make_rule(tree["retail"], name="retail rule")

    batch = [sample(d, at(0), temperature=T) for d in (at_acme, at_store, at_globex)]

    assert evaluate_batch(batch, [], at(0)) == (1, 0)
    assert [(serial, status) for serial, status, *_ in alerts()] == [(at_store.serial, OPEN)]


@pytest.mark.django_db
def test_profile_device_and_group_narrow_a_rule(tree, telemetry_version):
    from apps.core.actors import SYSTEM
    from apps.devices import groups

    from .conftest import make_version

    other_version = make_version(tree["acme"], name="Other")
    plain, tagged, member, other = (
        make_device(telemetry_version, tree["acme"]),
        make_device(telemetry_version, tree["acme"]),
        make_device(telemetry_version, tree["acme"]),
        make_device(other_version, tree["acme"]),
    )
    tagged.tags = ["cold"]
    tagged.save(update_fields=["tags"])
    static = groups.group_create(actor=SYSTEM, organization=tree["acme"], name="Static")
    groups.group_add_devices(actor=SYSTEM, group=static, device_ids=[member.pk])
    dynamic = groups.group_create(
        actor=SYSTEM,
        organization=tree["acme"],
        name="Cold",
        kind="dynamic",
        filter={"tags_all": ["cold"]},
    )
    by_profile = make_rule(tree["acme"], name="profile", profile=other_version.profile)
    by_device = make_rule(tree["acme"], name="device", device=plain)
    by_static = make_rule(tree["acme"], name="static", group=static)
    by_dynamic = make_rule(tree["acme"], name="dynamic", group=dynamic)

    batch = [sample(d, at(0), temperature=T) for d in (plain, tagged, member, other)]

    assert evaluate_batch(batch, [], at(0)) == (4, 0)
    assert sorted((alert.rule.name, alert.device.serial) for alert in _alerts()) == sorted(
        [
            (by_profile.name, other.serial),
            (by_device.name, plain.serial),
            (by_static.name, member.serial),
            (by_dynamic.name, tagged.serial),
        ]
    )


@pytest.mark.django_db
def test_one_unresolved_alert_per_rule_and_device(tree, telemetry_version):
    one, two = (
        make_device(telemetry_version, tree["acme"]),
        make_device(telemetry_version, tree["acme"]),
    )
    first, second = make_rule(tree["acme"], name="first"), make_rule(tree["acme"], name="second")

    for seconds in (0, 10, 20):
        evaluate_batch([sample(d, at(seconds), temperature=T) for d in (one, two)], [], at(seconds))

    assert sorted((a.rule_id, a.device_id, a.status) for a in _alerts()) == sorted(
        (rule.pk, device.pk, OPEN) for rule in (first, second) for device in (one, two)
    )


# --- what an opening writes --------------------------------------------------------------------


@pytest.mark.django_db
def test_an_opening_writes_its_event_and_audit_row(tree, thermo):
    rule = make_rule(tree["acme"], name="Too hot", severity="critical")

    evaluate_batch([sample(thermo, at(0), temperature=91.5)], [], at(0))

    alert = _alerts()[0]
    assert (alert.organization_id, alert.severity, alert.message) == (
        tree["acme"].pk,
        "critical",
        "temperature 91.5 > 80",
    )
    assert alert.details == {"value": 91.5, "since": at(0).isoformat(), "metric": "temperature"}
    assert alert_events() == [
        (
            "alert.opened",
            {
                "alert_id": str(alert.pk),
                "rule_id": str(rule.pk),
                "rule_name": "Too hot",
                "device_id": str(thermo.pk),
                "device_serial": thermo.serial,
                "severity": "critical",
                "message": "temperature 91.5 > 80",
                "status": "open",
                "opened_at": at(0).isoformat(),
                "by": None,
            },
        )
    ]
    assert alert_audit() == [("alert.open", "system", {"status": [None, "open"]})]


# --- cost --------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("devices", [1, 60])
def test_a_batch_costs_the_same_few_queries_whatever_its_size(
    tree, telemetry_version, django_assert_num_queries, devices
):
    fleet = [make_device(telemetry_version, tree["retail"]) for _ in range(devices)]
    make_rule(tree["acme"], name="hot")
    make_rule(tree["acme"], "range", {"metric": "humidity", "low": 20, "high": 60}, name="damp")
    warm_up = [sample(d, at(0), temperature=20, humidity=40) for d in fleet]
    evaluate_batch(warm_up, [], at(0))  # loads the rules of retail and above

    quiet = [sample(d, at(10), temperature=21, humidity=41) for d in fleet]
    with django_assert_num_queries(3):  # create missing conditions, lock them, save them
        assert evaluate_batch(quiet, [], at(10)) == (0, 0)
    hot = [sample(d, at(20), temperature=90, humidity=41) for d in fleet]
    with django_assert_num_queries(3 + 1 + 2 + 1):  # + open alerts, events (2), audit
        assert evaluate_batch(hot, [], at(20)) == (devices, 0)


@pytest.mark.django_db
def test_a_batch_no_rule_applies_to_costs_no_query(tree, thermo, django_assert_num_queries):
    make_rule(tree["globex"])
    evaluate_batch([sample(thermo, at(0), temperature=T)], [], at(0))

    with django_assert_num_queries(0):
        assert evaluate_batch([sample(thermo, at(1), temperature=T)], [], at(1)) == (0, 0)
