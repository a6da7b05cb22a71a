"""The heartbeat sweeper (``apps.telemetry.wellness.heartbeat_sweep``): each device's heartbeat
policy applied to its connectivity, as a table; events, idempotence, query budget, the indexes
it reads, and the push to open pages. Real PostgreSQL, and the real websocket consumer on the
Redis channel layer for the push."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from apps.accounts.roles import Role
from apps.core import events as core_events
from apps.core.models import Event
from apps.devices.choices import DeviceState
from apps.devices.models import Device
from apps.profiles.models import DeviceProfile, ProfileVersion
from apps.telemetry import wellness
from apps.telemetry.wellness import HeartbeatPolicy, heartbeat_policy, heartbeat_sweep
from tests.accounts.test_consumers import headers_for, live, run
from tests.factories import make_member

NOW = datetime.datetime(2026, 11, 30, 12, 0, tzinfo=datetime.UTC)
A, M, S = DeviceState.ACTIVE, DeviceState.MAINTENANCE, DeviceState.SUSPENDED
D, R = DeviceState.DECOMMISSIONED, DeviceState.REPLACED
FAST = {"heartbeat": {"interval_seconds": 10, "missed_beats": 2}}  # 20 s, +15 s: 35 s
SLOW = {"heartbeat": {"interval_seconds": 600, "missed_beats": 3}}  # 1,800 s, +15 s: 1,815 s


@dataclass(frozen=True)
class Case:
    name: str
    profile: str  # "mqtt" (60 s x 3: offline after 195 s), "https" or "both" (the same policy)
    state: str
    connectivity: str
    age: float | None  # seconds between last_seen_at and NOW; None: never seen
    provisioning: dict[str, Any]
    after: str


CASES = [
    Case("online within its policy", "mqtt", A, "online", 194, {}, "online"),
    Case("online exactly at the deadline", "mqtt", A, "online", 195, {}, "online"),
    Case("online past policy and granularity", "mqtt", A, "online", 195.5, {}, "offline"),
    Case("online past policy, within granularity", "mqtt", A, "online", 190, {}, "online"),
    Case("provisioning shorter than the profile", "mqtt", A, "online", 36, FAST, "offline"),
    Case("provisioning shorter, still on time", "mqtt", A, "online", 34, FAST, "online"),
    Case("provisioning longer than the profile", "mqtt", A, "online", 1000, SLOW, "online"),
    Case("provisioning longer, overdue", "mqtt", A, "online", 1816, SLOW, "offline"),
    Case(
        "unreadable provisioning: 60 s x 3",
        "mqtt",
        A,
        "online",
        196,
        {"heartbeat": {"interval_seconds": "10", "missed_beats": 2}},
        "offline",
    ),
    Case(
        "half a provisioning policy: 60 s x 3",
        "mqtt",
        A,
        "online",
        190,
        {"heartbeat": {"interval_seconds": 10}},
        "online",
    ),
    Case("maintenance is left alone", "mqtt", M, "online", 100_000, {}, "online"),
    Case("suspended is left alone", "mqtt", S, "online", 100_000, {}, "online"),
    Case("decommissioned is left alone", "mqtt", D, "online", 100_000, {}, "online"),
    Case("replaced is left alone", "mqtt", R, "online", 100_000, {}, "online"),
    Case("already offline", "mqtt", A, "offline", 100_000, {}, "offline"),
    Case("never seen", "mqtt", A, "unknown", None, {}, "unknown"),
    Case("unknown but seen long ago", "mqtt", A, "unknown", 100_000, {}, "offline"),
    Case("online without a sighting", "mqtt", A, "online", None, {}, "online"),
    Case("MQTT offline with a fresh heartbeat", "mqtt", A, "offline", 5, {}, "offline"),
    Case("MQTT+HTTPS offline with a fresh heartbeat", "both", A, "offline", 5, {}, "offline"),
    Case("HTTPS offline, seen within its policy", "https", A, "offline", 190, {}, "online"),
    Case("HTTPS unknown, seen within its policy", "https", A, "unknown", 5, {}, "online"),
    Case("HTTPS offline, provisioning on time", "https", A, "offline", 30, FAST, "online"),
    Case("HTTPS offline, provisioning overdue", "https", A, "offline", 40, FAST, "offline"),
    Case("HTTPS online, overdue", "https", A, "online", 196, {}, "offline"),
    Case("HTTPS offline, overdue", "https", A, "offline", 196, {}, "offline"),
    Case("HTTPS in maintenance, fresh", "https", M, "offline", 5, {}, "offline"),
]


def version_of(organization: Any, kind: str) -> ProfileVersion:
    profile, _ = DeviceProfile.objects.get_or_create(
        organization=organization, slug=kind, defaults={"name": kind.upper()}
    )
    version, _ = ProfileVersion.objects.get_or_create(
        profile=profile,
        number=1,
        defaults={
            "connection_type": kind,
            "heartbeat_interval_seconds": 60,
            "heartbeat_missed_beats": 3,
        },
    )
    return version


def build(tree: dict[str, Any], cases: list[Case]) -> dict[str, Device]:
    devices = {}
    for index, case in enumerate(cases):
        seen = None if case.age is None else NOW - datetime.timedelta(seconds=case.age)
        organization = tree["acme"] if index % 2 else tree["retail"]
        devices[case.name] = Device.objects.create(
            organization=organization,
            manufacturer=tree["acme"],
            profile_version=version_of(tree["acme"], case.profile),
            serial=f"HB-{index:03}",
            state=case.state,
            connectivity=case.connectivity,
            last_seen_at=seen,
            provisioning=case.provisioning,
        )
    return devices


def connectivity_events() -> list[tuple[str, str, Any, dict[str, Any]]]:
    return sorted(
        (event.type, event.subject_id, event.organization_id, event.payload)
        for event in Event.objects.filter(type__in=["device.online", "device.offline"])
    )


@pytest.mark.django_db
def test_each_device_gets_its_own_policy(tree):
    devices = build(tree, CASES)

    result = heartbeat_sweep(now=NOW)

    after = dict(
        Device.objects.filter(serial__startswith="HB-").values_list("serial", "connectivity")
    )
    assert {case.name: after[devices[case.name].serial] for case in CASES} == {
        case.name: case.after for case in CASES
    }
    changed = [case for case in CASES if case.after != case.connectivity]
    assert sorted(change.serial for change in result.offline + result.online) == sorted(
        devices[case.name].serial for case in changed
    )
    assert [change.id for change in result.offline] == sorted(
        devices[case.name].pk for case in changed if case.after == "offline"
    )
    # last_seen_at is never moved by the sweeper
    seen = dict(Device.objects.values_list("serial", "last_seen_at"))
    assert all(seen[device.serial] == device.last_seen_at for device in devices.values())


@pytest.mark.django_db
def test_each_change_writes_the_connectivity_workers_event_once(tree):
    cases = [
        case
        for case in CASES
        if case.name
        in (
            "HTTPS offline, seen within its policy",
            "online past policy and granularity",
            "online within its policy",
        )
    ]
    devices = build(tree, cases)
    went_online = devices["HTTPS offline, seen within its policy"]
    went_offline = devices["online past policy and granularity"]

    heartbeat_sweep(now=NOW)
    again = heartbeat_sweep(now=NOW + datetime.timedelta(seconds=1))

    assert (again.offline, again.online) == ([], [])
    assert connectivity_events() == sorted(
        [
            (
                "device.offline",
                str(went_offline.pk),
                went_offline.organization_id,
                {
                    "id": str(went_offline.pk),
                    "serial": went_offline.serial,
                    "from": "online",
                    "to": "offline",
                    "last_seen_at": went_offline.last_seen_at.isoformat(),
                },
            ),
            (
                "device.online",
                str(went_online.pk),
                went_online.organization_id,
                {
                    "id": str(went_online.pk),
                    "serial": went_online.serial,
                    "from": "offline",
                    "to": "online",
                    "last_seen_at": went_online.last_seen_at.isoformat(),
                },
            ),
        ]
    )


@pytest.mark.django_db
def test_the_granularity_setting_is_the_slack(tree, settings):
    settings.TELEMETRY_LAST_SEEN_GRANULARITY = datetime.timedelta(seconds=0)
    devices = build(
        tree,
        [Case("a", "mqtt", A, "online", 181, {}, ""), Case("b", "mqtt", A, "online", 179, {}, "")],
    )

    heartbeat_sweep(now=NOW)

    assert Device.objects.get(pk=devices["a"].pk).connectivity == "offline"
    assert Device.objects.get(pk=devices["b"].pk).connectivity == "online"


@pytest.mark.django_db
def test_a_sweep_of_many_devices_is_one_statement(tree, django_assert_num_queries):
    version = version_of(tree["acme"], "mqtt")
    Device.objects.bulk_create(
        Device(
            organization=tree["acme"],
            manufacturer=tree["acme"],
            profile_version=version,
            serial=f"BULK-{index:04}",
            state=A,
            connectivity="online",
            last_seen_at=NOW - datetime.timedelta(seconds=300 if index % 2 else 60),
            provisioning={}
            if index % 3
            else {"heartbeat": {"interval_seconds": 60, "missed_beats": 3}},
        )
        for index in range(400)
    )

    # SAVEPOINT, the UPDATE, one INSERT of events (and one of their deliveries when a consumer
    # wants them: alerting's state-change rules do), RELEASE.
    wanted = any(c.wants("device.offline") for c in core_events.consumers().values())
    with django_assert_num_queries(5 if wanted else 4):
        result = heartbeat_sweep(now=NOW)
    assert (len(result.offline), len(result.online)) == (200, 0)
    assert Event.objects.filter(type="device.offline").count() == 200
    with django_assert_num_queries(3):  # nothing left to change: the UPDATE alone
        assert heartbeat_sweep(now=NOW).offline == []


@pytest.mark.django_db
def test_the_sweep_reads_its_partial_indexes_never_the_whole_table(tree):
    """With a fleet big enough for the planner to care (3,000 devices, ANALYZEd), every read of
    ``devices_device`` in the sweep is an index scan of its indexes or of the primary key."""
    version = version_of(tree["acme"], "https")
    Device.objects.bulk_create(
        Device(
            organization=tree["acme"],
            manufacturer=tree["acme"],
            profile_version=version,
            serial=f"IX-{index:05}",
            state=A if index % 10 else M,
            connectivity=("online", "online", "offline", "unknown")[index % 4],
            last_seen_at=NOW
            - datetime.timedelta(seconds=(index % 97) + (5000 if index % 4 == 2 else 0)),
            provisioning={}
            if index % 2
            else {"heartbeat": {"interval_seconds": 60, "missed_beats": 3}},
        )
        for index in range(3000)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE devices_device")
        cursor.execute("ANALYZE profiles_profileversion")
        cursor.execute("EXPLAIN " + wellness.SWEEP_SQL, wellness.sweep_parameters(NOW))
        plan = "\n".join(row[0] for row in cursor.fetchall())

    assert "Seq Scan on devices_device" not in plan, plan
    assert plan.count("devices_heartbeat_due") >= 2, plan  # overdue and on-time arms
    assert plan.count("devices_heartbeat_seen") >= 2, plan
    assert "devices_device_pkey" in plan, plan


@pytest.mark.django_db
def test_the_policy_shown_is_the_one_applied(tree):
    version = version_of(tree["acme"], "mqtt")
    rows = [
        ({}, HeartbeatPolicy(60, 3, "profile")),
        (FAST, HeartbeatPolicy(10, 2, "provisioning")),
        (SLOW, HeartbeatPolicy(600, 3, "provisioning")),
        (
            {"heartbeat": {"interval_seconds": 10}},
            HeartbeatPolicy(60, 3, "provisioning (unreadable: defaults)"),
        ),
        (
            {"heartbeat": {"interval_seconds": 0, "missed_beats": 3}},
            HeartbeatPolicy(60, 3, "provisioning (unreadable: defaults)"),
        ),
        (
            {"heartbeat": {"interval_seconds": 10**9, "missed_beats": 5000}},
            HeartbeatPolicy(604800, 1000, "provisioning"),
        ),
    ]
    for provisioning, expected in rows:
        device = Device(profile_version=version, provisioning=provisioning)
        assert heartbeat_policy(device) == expected
    assert HeartbeatPolicy(10, 2, "provisioning").offline_after == datetime.timedelta(seconds=35)


@pytest.mark.django_db(transaction=True)
def test_the_changes_reach_the_organizations_pages_after_commit(tree):
    viewer = headers_for(make_member(tree["retail"], Role.VIEWER))
    stranger = headers_for(make_member(tree["globex"], Role.OWNER))
    devices = build(tree, [Case("late", "mqtt", A, "online", 400, {}, "offline")])
    late = devices["late"]  # index 0: in retail

    async def scenario() -> list[Any]:
        sockets = [live(headers) for headers in (viewer, stranger)]
        for socket in sockets:
            connected, _ = await socket.connect()
            assert connected is True
            await socket.receive_json_from(timeout=5)  # hello
        await database_sync_to_async(heartbeat_sweep)(now=NOW)
        received = [
            await sockets[0].receive_json_from(timeout=5),
            await sockets[0].receive_nothing(timeout=0.5),
            await sockets[1].receive_nothing(timeout=0.2),
        ]
        for socket in sockets:
            await socket.disconnect()
        return received

    assert run(scenario) == [
        {
            "type": "batch",
            "messages": [
                {
                    "type": "device.connectivity",
                    "id": str(late.pk),
                    "connectivity": "offline",
                    "last_seen_at": late.last_seen_at.isoformat(),
                }
            ],
        },
        True,
        True,
    ]


@pytest.mark.django_db
def test_the_periodic_task_is_on_the_beat_schedule_and_runs_the_sweep(tree, settings):
    from apps.telemetry.tasks import heartbeat_sweep as task

    entry = settings.CELERY_BEAT_SCHEDULE["telemetry.heartbeat_sweep"]
    assert entry["task"] == task.name == "telemetry.heartbeat_sweep"
    assert datetime.timedelta(seconds=15) <= entry["schedule"] <= datetime.timedelta(seconds=30)
    assert task.soft_time_limit == 15
    build(tree, [Case("late", "mqtt", A, "online", 10**6, {}, "offline")])

    assert task.run() == {"offline": 1, "online": 0}
    assert task.run() == {"offline": 0, "online": 0}
