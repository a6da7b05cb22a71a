"""Profile services: versions, validation, audit, events, device upgrades."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, Event
from apps.devices.models import Device
from apps.profiles import services
from apps.profiles.models import DeviceProfile, ProfileVersion
from apps.profiles.validation import _validator, attributes_errors, attributes_validator
from tests.factories import actor, make_member

from .helpers import ATTRIBUTES, COMMANDS, TELEMETRY, make_device, make_profile, version_of

pytestmark = pytest.mark.django_db


def test_create_makes_version_one_with_audit_and_event(tree):
    owner = actor(make_member(tree["acme"], Role.OWNER, "owner@acme.test"))
    profile = services.profile_create(
        actor=owner,
        organization=tree["acme"],
        name=" Door Sensor ",
        description="Doors",
        telemetry_schema=TELEMETRY,
        command_catalog=COMMANDS,
        hardware_revisions=["rev-a"],
        heartbeat_interval_seconds=30,
    )
    version = version_of(profile)
    assert (profile.name, profile.slug, profile.latest_number) == ("Door Sensor", "door-sensor", 1)
    assert (version.telemetry_schema, version.command_catalog) == (TELEMETRY, COMMANDS)
    assert (version.heartbeat_interval_seconds, version.heartbeat_missed_beats) == (30, 3)
    assert version.created_by_id == owner.user_id
    row = AuditLog.objects.get(action="profile.create")
    assert (row.object_id, row.organization_id, row.actor_label) == (
        str(profile.pk),
        tree["acme"].pk,
        "owner@acme.test",
    )
    assert row.changes["name"] == [None, "Door Sensor"]
    assert row.changes["heartbeat_interval_seconds"] == [None, 30]
    event = Event.objects.get(type="profile.created")
    assert event.payload == {
        "profile": str(profile.pk),
        "version": str(version.pk),
        "number": 1,
        "name": "Door Sensor",
    }


def test_create_refuses_bad_fields_naming_each_one(tree):
    audit_rows = AuditLog.objects.count()
    with pytest.raises(ValidationError) as caught:
        services.profile_create(
            actor=SYSTEM,
            organization=tree["acme"],
            name="X",
            attributes_schema={"type": "strange"},
            telemetry_schema={"metrics": [{"name": "t", "type": "complex"}]},
            command_catalog=[
                {"name": "reboot"},
                {"name": "reboot", "criticality": "urgent", "schema": {"type": 5}},
                {"name": "Bad Name"},
            ],
            heartbeat_interval_seconds=0,
            connection_type="pigeon",
            colour="red",
        )
    assert caught.value.message_dict == {
        "colour": ["This field cannot be set here."],
        "attributes_schema": [
            "Not a valid JSON Schema at type: 'strange' is not valid under any of the given schemas"
        ],
        "telemetry_schema": ["metrics[0] (t): unknown type 'complex'."],
        "command_catalog": [
            "Command reboot: duplicate name.",
            "Command reboot: schema: Not a valid JSON Schema at type: 5 is not valid under any "
            "of the given schemas",
            "Command reboot: criticality must be one of normal, critical.",
            "Command 3: name must be lowercase letters, digits, - and _.",
        ],
        "heartbeat_interval_seconds": ["Must be a whole number from 1 to 604800."],
        "connection_type": ["Must be one of mqtt, https, both."],
    }
    assert (DeviceProfile.objects.count(), AuditLog.objects.count()) == (0, audit_rows)


def test_create_refuses_a_duplicate_slug_in_the_organization(tree):
    make_profile(tree["acme"], "Sensor")
    with pytest.raises(ValidationError) as caught:
        make_profile(tree["acme"], "Sensor")
    assert caught.value.message_dict == {
        "slug": ["This organization already has a profile with this slug."]
    }
    assert make_profile(tree["globex"], "Sensor").slug == "sensor"


def test_update_edits_an_unused_version_in_place(tree):
    profile = make_profile(tree["acme"])
    version = services.profile_update(
        actor=SYSTEM, profile=profile, name="Sensor 2", heartbeat_missed_beats=5
    )
    profile.refresh_from_db()
    assert (version.pk, version.number, version.heartbeat_missed_beats) == (
        version_of(profile).pk,
        1,
        5,
    )
    assert (profile.name, profile.latest_number, ProfileVersion.objects.count()) == (
        "Sensor 2",
        1,
        1,
    )
    row = AuditLog.objects.get(action="profile.update")
    assert row.changes == {
        "name": ["Sensor", "Sensor 2"],
        "version": [1, 1],
        "heartbeat_missed_beats": [3, 5],
    }
    event = Event.objects.get(type="profile.updated")
    assert event.payload["changes"] == ["heartbeat_missed_beats", "name", "version"]


def test_update_of_a_version_in_use_makes_the_next_version(tree):
    profile = make_profile(tree["acme"], telemetry_schema=TELEMETRY)
    v1 = version_of(profile)
    device = make_device(v1, tree["retail"])
    v2 = services.profile_update(actor=SYSTEM, profile=profile, heartbeat_interval_seconds=120)
    profile.refresh_from_db()
    v1.refresh_from_db()
    device.refresh_from_db()
    assert (v2.number, v2.heartbeat_interval_seconds, v2.telemetry_schema) == (2, 120, TELEMETRY)
    assert (v1.heartbeat_interval_seconds, profile.latest_number) == (60, 2)
    assert device.profile_version_id == v1.pk  # devices move only when upgraded
    row = AuditLog.objects.get(action="profile.version_create")
    assert row.changes == {"version": [1, 2], "heartbeat_interval_seconds": [60, 120]}
    event = Event.objects.get(type="profile.version_created")
    assert event.payload == {
        "profile": str(profile.pk),
        "version": str(v2.pk),
        "number": 2,
        "previous": str(v1.pk),
    }
    # version 2 is unused: the next change edits it in place
    again = services.profile_update(actor=SYSTEM, profile=profile, heartbeat_interval_seconds=90)
    assert (again.pk, again.number, ProfileVersion.objects.filter(profile=profile).count()) == (
        v2.pk,
        2,
        2,
    )


def test_update_without_changes_writes_nothing(tree):
    profile = make_profile(tree["acme"], heartbeat_interval_seconds=60)
    before = (AuditLog.objects.count(), Event.objects.count())
    version = services.profile_update(
        actor=SYSTEM, profile=profile, name="Sensor", heartbeat_interval_seconds=60
    )
    assert version.number == 1
    assert (AuditLog.objects.count(), Event.objects.count()) == before


def test_upgrade_moves_the_actors_devices_in_one_statement(tree, django_assert_num_queries):
    profile = make_profile(tree["acme"])
    v1 = version_of(profile)
    retail_devices = [make_device(v1, tree["retail"]) for _ in range(3)]
    hospital_device = make_device(v1, tree["hospital"])
    other = make_device(version_of(make_profile(tree["acme"], "Other")), tree["retail"])
    v2 = services.profile_update(actor=SYSTEM, profile=profile, heartbeat_missed_beats=4)
    operator = actor(make_member(tree["retail"], Role.OPERATOR, "op@retail.test"))
    # savepoint + release, the profile's key-share lock, the UPDATE, one audit INSERT, the
    # profile, the event
    with django_assert_num_queries(7):
        moved = services.profile_upgrade_devices(
            actor=operator,
            version=v2,
            device_ids=[d.pk for d in [*retail_devices, hospital_device, other]],
        )
    assert moved == 3
    states = dict(Device.objects.values_list("pk", "profile_version_id"))
    assert [states[d.pk] for d in retail_devices] == [v2.pk] * 3
    assert (states[hospital_device.pk], states[other.pk]) == (v1.pk, other.profile_version_id)
    rows = AuditLog.objects.filter(action="device.profile_upgrade").order_by("object_id")
    change = {"profile_version": [str(v1.pk), str(v2.pk)]}
    assert [(r.object_id, r.organization_id, r.actor_label, r.changes) for r in rows] == [
        (str(d.pk), tree["retail"].pk, "op@retail.test", change)
        for d in sorted(retail_devices, key=lambda d: str(d.pk))
    ]
    event = Event.objects.get(type="profile.devices_upgraded")
    assert event.payload == {
        "profile": str(profile.pk),
        "version": str(v2.pk),
        "number": 2,
        "upgraded": 3,
        "from": {str(v1.pk): 3},
    }


def test_upgrade_by_filter(tree):
    profile = make_profile(tree["acme"])
    v1 = version_of(profile)
    tagged = make_device(v1, tree["retail"], tags=["beta"])
    make_device(v1, tree["retail"], tags=["stable"])
    v2 = services.profile_update(actor=SYSTEM, profile=profile, heartbeat_missed_beats=4)
    moved = services.profile_upgrade_devices(
        actor=SYSTEM, version=v2, selection={"tags_any": ["beta"]}
    )
    assert moved == 1
    assert list(Device.objects.filter(profile_version=v2).values_list("pk", flat=True)) == [
        tagged.pk
    ]


def test_upgrade_refuses_a_bad_filter_or_both_choices(tree):
    version = version_of(make_profile(tree["acme"]))
    with pytest.raises(ValidationError) as caught:
        services.profile_upgrade_devices(actor=SYSTEM, version=version, selection={"color": 1})
    assert caught.value.message_dict == {"filter": ["Unknown filter."]}
    with pytest.raises(ValidationError) as caught:
        services.profile_upgrade_devices(actor=SYSTEM, version=version)
    assert caught.value.message_dict == {"devices": ["Give either a list of devices or a filter."]}


def test_upgrade_of_nothing_writes_nothing(tree):
    version = version_of(make_profile(tree["acme"]))
    assert services.profile_upgrade_devices(actor=SYSTEM, version=version, device_ids=[]) == 0
    assert Event.objects.filter(type="profile.devices_upgraded").count() == 0


def test_attributes_errors_name_each_field(tree):
    version = version_of(make_profile(tree["acme"], attributes_schema=ATTRIBUTES))
    assert attributes_errors(version, {"color": "red", "location": {"floor": 2}}) == {}
    assert attributes_errors(version, {"location": {"floor": "two"}}) == {
        "color": "'color' is a required property",
        "location.floor": "'two' is not of type 'integer'",
    }
    assert attributes_errors(version, []) == {"__all__": "[] is not of type 'object'"}


def test_the_attributes_validator_is_cached_per_version_and_update(tree):
    profile = make_profile(tree["acme"], attributes_schema=ATTRIBUTES)
    version = version_of(profile)
    _validator.cache_clear()
    first = attributes_validator(version)
    assert attributes_validator(version_of(profile)) is first
    services.profile_update(actor=SYSTEM, profile=profile, attributes_schema={"type": "object"})
    fresh = version_of(profile)
    assert attributes_validator(fresh) is not first
    assert attributes_errors(fresh, {}) == {}
    assert _validator.cache_info().misses == 2
