"""Registering and updating devices: validation with exact messages, nothing half-written."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext

from apps.core.actors import SYSTEM
from apps.devices import services
from apps.devices.models import Device
from apps.profiles.services import profile_update
from tests.factories import actor, make_member

from .registry_support import SCHEMA, device_audit, device_events, make_version, register

pytestmark = pytest.mark.django_db


def test_it_registers_a_device_of_a_shared_profile(tree):
    version = make_version(tree["acme"])
    device = services.device_register(
        actor=actor(make_member(tree["retail"], "operator")),
        organization=tree["retail"],
        profile_version=version,
        serial=" SN-1 ",
        name="Lobby",
        tags=["eu", "lobby"],
        attributes={"color": "red", "floor": 2},
        latitude=48.1,
        longitude=11.5,
        site=tree["store"],
    )
    stored = Device.objects.get()
    assert (stored.pk, stored.organization_id, stored.manufacturer_id, stored.serial) == (
        device.pk,
        tree["retail"].pk,
        tree["acme"].pk,
        "SN-1",
    )
    assert (stored.state, stored.tags, stored.attributes, stored.site_id) == (
        "escrow",
        ["eu", "lobby"],
        {"color": "red", "floor": 2},
        tree["store"].pk,
    )
    row = device_audit().get()
    assert (row.action, row.organization_id, row.changes["serial"]) == (
        "device.register",
        tree["retail"].pk,
        [None, "SN-1"],
    )
    assert list(device_events().values_list("type", "payload")) == [
        (
            "device.registered",
            {
                "id": str(device.pk),
                "serial": "SN-1",
                "state": "escrow",
                "profile_version": str(version.pk),
            },
        )
    ]


def refused(tree, **fields) -> dict[str, list[str]]:
    version = fields.pop("version", None) or make_version(tree["acme"])
    arguments = {
        "actor": SYSTEM,
        "organization": tree["retail"],
        "profile_version": version,
        "serial": "SN-2",
    } | fields
    before = (Device.objects.count(), device_audit().count(), device_events().count())
    with pytest.raises(ValidationError) as error:
        services.device_register(**arguments)
    assert (Device.objects.count(), device_audit().count(), device_events().count()) == before
    return error.value.message_dict


def test_attributes_breaking_the_schema_are_refused_field_by_field(tree):
    assert refused(tree, attributes={"color": "blue", "floor": -1, "extra": 1}) == {
        "attributes": ["Additional properties are not allowed ('extra' was unexpected)"],
        "attributes.color": ["'blue' is not one of ['red', 'green']"],
        "attributes.floor": ["-1 is less than the minimum of 0"],
    }


def test_every_bad_field_is_named(tree):
    assert refused(
        tree,
        serial="",
        tags=["ok", ""],
        latitude=91.0,
        longitude=None,
        site=tree["hospital"],
        state="replaced",
    ) == {
        "serial": ["Must be 1 to 128 characters."],
        "tags": ["Must be a list of tags of 1 to 64 characters."],
        "longitude": ["Latitude and longitude go together."],
        "latitude": ["Must be between -90 and 90."],
        "site": ["Must be the device's organization or inside it."],
        "state": ["A device cannot be registered as replaced."],
    }


def test_a_duplicate_serial_of_the_same_manufacturer_is_refused(tree):
    version = make_version(tree["acme"])
    register(tree["retail"], version, "SN-2")
    other = make_version(tree["globex"], slug="other")
    register(tree["globex"], other, "SN-2")  # another manufacturer: fine
    assert refused(tree, version=version, serial="SN-2", organization=tree["hospital"]) == {
        "serial": ["A device with this serial number already exists for this manufacturer."]
    }
    assert Device.objects.filter(serial="SN-2").count() == 2


def test_a_profile_not_shared_with_the_organization_is_unknown(tree):
    globex_version = make_version(tree["globex"], slug="globex")
    assert refused(tree, version=globex_version) == {
        "profile_version": ["Unknown profile version."]
    }
    retail_version = make_version(tree["retail"], slug="retail")
    hidden = actor(make_member(tree["hospital"], "owner"))
    assert refused(tree, version=retail_version, organization=tree["hospital"], actor=hidden) == {
        "profile_version": ["Unknown profile version."]
    }


def test_update_records_the_exact_diff(tree):
    device = register(tree["retail"], make_version(tree["acme"]), "SN-1", name="Old")
    services.device_update(
        actor=SYSTEM,
        device=device,
        name="New",
        tags=["x"],
        attributes={"floor": 1},
        site=tree["store"],
    )
    device.refresh_from_db()
    assert (device.name, device.tags, device.attributes, device.site_id) == (
        "New",
        ["x"],
        {"floor": 1},
        tree["store"].pk,
    )
    row = device_audit().get(action="device.update")
    assert row.changes == {
        "name": ["Old", "New"],
        "tags": [[], ["x"]],
        "attributes": [{}, {"floor": 1}],
        "site": [None, str(tree["store"].pk)],
    }
    assert device_events().get(type="device.updated").payload == {
        "id": str(device.pk),
        "serial": "SN-1",
        "fields": ["attributes", "name", "site", "tags"],
    }


def test_an_invalid_update_changes_nothing(tree):
    device = register(tree["retail"], make_version(tree["acme"]), "SN-1", name="Old")
    with pytest.raises(ValidationError) as error:
        services.device_update(
            actor=SYSTEM, device=device, name="New", attributes={"floor": "x"}, state="active"
        )
    assert error.value.message_dict == {"state": ["This field cannot be changed here."]}
    with pytest.raises(ValidationError) as error:
        services.device_update(actor=SYSTEM, device=device, name="New", attributes={"floor": "x"})
    assert error.value.message_dict == {"attributes.floor": ["'x' is not of type 'integer'"]}
    device.refresh_from_db()
    assert (device.name, device.attributes) == ("Old", {})
    assert device_audit().filter(action="device.update").count() == 0


def test_an_update_that_changes_nothing_writes_nothing(tree):
    device = register(tree["retail"], make_version(tree["acme"]), "SN-1", name="Same")
    services.device_update(actor=SYSTEM, device=device, name="Same")
    assert device_audit().filter(action="device.update").count() == 0


# --- the profile version race --------------------------------------------------------------------

NEW_SCHEMA = {"type": "object", "properties": {"floor": {"type": "integer"}}, "required": ["floor"]}


def _waiting_on_a_lock(thread: threading.Thread) -> bool:
    """True once another backend of this test waits for a row lock; False if ``thread`` ended
    first (it did not wait). Polls pg_stat_activity for at most 10 s."""
    deadline = time.monotonic() + 10
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline and thread.is_alive():
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # fresh inside a transaction too
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.01)
    return False


def _in_thread(target: Any, results: dict[str, Any], name: str) -> threading.Thread:
    def run() -> None:
        try:
            results[name] = target()
        except Exception as error:  # the assertions below show it
            results[name] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_profile_edit_waits_for_the_first_device_and_then_makes_a_new_version(tree):
    version = make_version(tree["acme"])
    registered, release = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def register_and_hold() -> Device:
        with transaction.atomic():
            device = register(tree["retail"], version, "SN-1", attributes={"floor": 1})
            registered.set()
            release.wait(10)  # keep the transaction open until the edit is waiting
        return device

    registering = _in_thread(register_and_hold, results, "device")
    assert registered.wait(10)
    editing = _in_thread(
        lambda: profile_update(actor=SYSTEM, profile=version.profile, attributes_schema=NEW_SCHEMA),
        results,
        "latest",
    )
    waited = _waiting_on_a_lock(editing)
    release.set()
    registering.join(10)
    editing.join(10)

    assert waited is True
    assert isinstance(results["device"], Device)
    latest = results["latest"]
    assert (latest.number, latest.attributes_schema) == (2, NEW_SCHEMA)
    version.refresh_from_db()
    assert version.attributes_schema == SCHEMA
    assert Device.objects.get().profile_version_id == version.pk


@pytest.mark.django_db(transaction=True)
def test_a_registration_waiting_for_a_profile_edit_validates_against_the_edited_version(tree):
    version = make_version(tree["acme"])
    results: dict[str, Any] = {}
    with transaction.atomic():
        latest = profile_update(actor=SYSTEM, profile=version.profile, attributes_schema=NEW_SCHEMA)
        registering = _in_thread(
            lambda: register(tree["retail"], version, "SN-1", attributes={"color": "red"}),
            results,
            "device",
        )
        waited = _waiting_on_a_lock(registering)
    registering.join(10)

    assert waited is True
    assert latest.pk == version.pk  # edited in place: no device used it yet
    error = results["device"]
    assert isinstance(error, ValidationError)
    assert error.message_dict == {"attributes.floor": ["'floor' is a required property"]}
    assert Device.objects.count() == 0


def test_registering_takes_a_key_share_lock_on_the_profile(tree):
    version = make_version(tree["acme"])
    with CaptureQueriesContext(connections["default"]) as captured:
        register(tree["retail"], version, "SN-1")
    locks = [query["sql"] for query in captured.captured_queries if "FOR KEY SHARE" in query["sql"]]
    assert len(locks) == 1
    assert "FOR KEY SHARE OF profile" in locks[0]
    assert str(version.pk) in locks[0]
