"""Health derivation (``apps.telemetry.health``) as a table: the annotation, the filter and the
counts agree with it, each in one query whatever the fleet size."""

from __future__ import annotations

import datetime
import itertools
from dataclasses import dataclass, field
from typing import Any

import pytest

from apps.accounts.roles import Role
from apps.devices.choices import DeviceState
from apps.devices.models import Device
from apps.telemetry.choices import Health
from apps.telemetry.health import annotate_health, health_counts, health_q
from apps.telemetry.models import Alert, AlertRule
from tests.factories import actor, make_member

from ..devices.registry_support import make_version

SEEN = datetime.datetime(2026, 11, 30, 9, 0, tzinfo=datetime.UTC)
_rules = itertools.count(1)


@dataclass(frozen=True)
class Case:
    name: str
    connectivity: str
    seen: bool
    alerts: list[tuple[str, str]] = field(default_factory=list)  # (severity, status)
    state: str = DeviceState.ACTIVE
    health: str = ""


CASES = [
    Case("never seen", "unknown", False, health=Health.UNKNOWN),
    Case("never seen, with an alert", "unknown", False, [("critical", "open")], health="unknown"),
    Case("offline", "offline", True, health=Health.OFFLINE),
    Case(
        "offline with a critical alert", "offline", True, [("critical", "open")], health="offline"
    ),
    Case("offline by a retained will, never seen", "offline", False, health=Health.OFFLINE),
    Case("online, no alert", "online", True, health=Health.OK),
    Case("online, critical open", "online", True, [("critical", "open")], health="critical"),
    Case(
        "online, major acknowledged",
        "online",
        True,
        [("major", "acknowledged")],
        "active",
        "critical",
    ),
    Case("online, critical resolved", "online", True, [("critical", "resolved")], health="ok"),
    Case("online, minor open", "online", True, [("minor", "open")], health=Health.WARNING),
    Case(
        "online, warning acknowledged",
        "online",
        True,
        [("warning", "acknowledged")],
        "active",
        "warning",
    ),
    Case("online, info open", "online", True, [("info", "open")], health=Health.OK),
    Case(
        "online, warning and major open",
        "online",
        True,
        [("warning", "open"), ("major", "open")],
        health=Health.CRITICAL,
    ),
    Case("seen, connectivity not reported yet", "unknown", True, health=Health.OK),
    Case("reported online, no sighting recorded", "online", False, health=Health.OK),
    Case(
        "maintenance, alert from before",
        "online",
        True,
        [("critical", "acknowledged")],
        DeviceState.MAINTENANCE,
        "critical",
    ),
    Case("maintenance, offline", "offline", True, [], DeviceState.MAINTENANCE, "offline"),
    Case("maintenance, quiet", "online", True, [], DeviceState.MAINTENANCE, "ok"),
]


def build(tree: dict[str, Any], cases: list[Case]) -> dict[str, Device]:
    version = make_version(tree["acme"])
    devices: dict[str, Device] = {}
    for index, case in enumerate(cases):
        device = Device.objects.create(
            organization=tree["acme"] if index % 2 else tree["retail"],
            manufacturer=tree["acme"],
            profile_version=version,
            serial=f"HL-{index:03}",
            state=case.state,
            connectivity=case.connectivity,
            last_seen_at=SEEN if case.seen else None,
        )
        for severity, status in case.alerts:
            alert(device, severity, status)
        devices[case.name] = device
    # a fleet-level alert (no device) concerns no device's health
    alert(None, "critical", "open", organization=tree["acme"])
    return devices


def alert(device: Device | None, severity: str, status: str, organization: Any = None) -> Alert:
    organization = organization or device.organization  # type: ignore[union-attr]
    rule = AlertRule.objects.create(
        organization=organization,
        name=f"rule {next(_rules)}",
        kind="threshold",
        condition={"metric": "temperature", "operator": "gt", "value": 80},
        severity=severity,
    )
    return Alert.objects.create(
        organization=organization,
        rule=rule,
        device=device,
        severity=severity,
        status=status,
        message=f"{severity} {status}",
    )


@pytest.mark.django_db
def test_health_is_derived_from_connectivity_then_alerts(tree, django_assert_num_queries):
    devices = build(tree, CASES)
    by_pk = {device.pk: name for name, device in devices.items()}

    with django_assert_num_queries(1):
        annotated = {
            by_pk[device.pk]: device.health for device in annotate_health(Device.objects.all())
        }

    assert annotated == {case.name: case.health for case in CASES}


@pytest.mark.django_db
def test_the_filter_selects_exactly_the_devices_of_each_health(tree):
    devices = build(tree, CASES)
    by_pk = {device.pk: name for name, device in devices.items()}

    for health in Health.values:
        selected = sorted(
            by_pk[pk] for pk in Device.objects.filter(health_q(health)).values_list("pk", flat=True)
        )
        assert selected == sorted(case.name for case in CASES if case.health == health), health
    with pytest.raises(ValueError):
        health_q("splendid")


@pytest.mark.django_db
def test_counts_have_every_state_in_one_query(tree, django_assert_num_queries):
    build(tree, CASES)
    expected = {value: sum(case.health == value for case in CASES) for value in Health.values}

    with django_assert_num_queries(1):
        counts = health_counts(Device.objects.all())

    assert counts == expected == {"ok": 6, "warning": 2, "critical": 4, "offline": 4, "unknown": 2}
    assert list(counts) == list(Health.values)


@pytest.mark.django_db
def test_counts_follow_the_queryset_given(tree):
    build(tree, CASES)
    retail_viewer = actor(make_member(tree["retail"], Role.VIEWER))
    stranger = actor(make_member(tree["globex"], Role.OWNER))
    in_retail = [case for index, case in enumerate(CASES) if index % 2 == 0]

    counts = health_counts(Device.objects.for_actor(retail_viewer, "view"))

    assert counts == {value: sum(c.health == value for c in in_retail) for value in Health.values}
    assert health_counts(Device.objects.for_actor(stranger, "view")) == dict.fromkeys(
        Health.values, 0
    )


@pytest.mark.django_db
def test_a_page_of_a_big_fleet_is_still_one_query(tree, django_assert_num_queries):
    version = make_version(tree["acme"])
    fleet = Device.objects.bulk_create(
        Device(
            organization=tree["acme"],
            manufacturer=tree["acme"],
            profile_version=version,
            serial=f"BIG-{index:04}",
            state=DeviceState.ACTIVE,
            connectivity=("online", "offline", "unknown")[index % 3],
            last_seen_at=SEEN,
        )
        for index in range(600)
    )
    for device in fleet[:60:3]:  # online ones
        alert(device, "critical", "open")

    with django_assert_num_queries(1):
        page = list(annotate_health(Device.objects.order_by("serial"))[:50])
    with django_assert_num_queries(1):
        counts = health_counts(Device.objects.all())

    assert [device.health for device in page[:6]] == [
        "critical",
        "offline",
        "ok",
        "critical",
        "offline",
        "ok",
    ]
    assert counts == {"ok": 380, "warning": 0, "critical": 20, "offline": 200, "unknown": 0}
