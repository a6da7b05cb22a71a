"""Replacement end to end: the successor takes over; both histories stay reachable."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from apps.core.actors import SYSTEM
from apps.core.models import Event
from apps.devices import replacement, selectors, services
from apps.devices.models import DeviceGroup, GroupMembership

from .registry_support import make_device, make_version, register

pytestmark = pytest.mark.django_db


def test_the_successor_takes_over_and_both_histories_stay_reachable(tree):
    version = make_version(tree["acme"])
    old = register(
        tree["retail"],
        version,
        "OLD",
        name="Till 3",
        tags=["eu"],
        attributes={"color": "red"},
        latitude=1.0,
        longitude=2.0,
        site=tree["store"],
    )
    services.device_transition(actor=SYSTEM, device=old, transition="activate")
    group = DeviceGroup.objects.create(organization=tree["retail"], name="Tills")
    GroupMembership.objects.create(group=group, device=old)
    new = register(tree["retail"], version, "NEW")
    old.refresh_from_db()
    successor = replacement.device_replace(actor=SYSTEM, old=old, new=new)
    old.refresh_from_db()
    new.refresh_from_db()
    assert successor.pk == new.pk
    assert (old.state, old.replaced_by_id) == ("replaced", new.pk)
    assert (new.state, new.name, new.tags, new.attributes, new.site_id) == (
        "active",
        "Till 3",
        ["eu"],
        {"color": "red"},
        tree["store"].pk,
    )
    assert (new.latitude, new.longitude, new.serial) == (1.0, 2.0, "NEW")
    assert list(GroupMembership.objects.values_list("group_id", "device_id")) == [
        (group.pk, new.pk)
    ]
    replaced = Event.objects.get(type="device.replaced")
    assert replaced.payload == {
        "old": str(old.pk),
        "new": str(new.pk),
        "organization": str(tree["retail"].pk),
    }
    from_new = selectors.device_timeline(actor=SYSTEM, device=new)
    from_old = selectors.device_timeline(actor=SYSTEM, device=old)
    assert [(e.time, e.action, e.device_id) for e in from_new] == [
        (e.time, e.action, e.device_id) for e in from_old
    ]
    assert [(e.action, e.relation) for e in from_new] == [
        ("device.credentials_revoked", "predecessor"),
        ("device.replace", "self"),
        ("device.replace", "predecessor"),
        ("device.register", "self"),
        ("device.transition", "predecessor"),
        ("device.register", "predecessor"),
    ]
    assert [e.relation for e in from_old] == [
        "self",
        "successor",
        "self",
        "successor",
        "self",
        "self",
    ]


def test_replacement_rules(tree):
    version = make_version(tree["acme"])
    old = make_device(tree["retail"], version, "OLD", state="active")
    cases = [
        (
            make_device(tree["retail"], version, "DEC", state="decommissioned"),
            "The successor must be in escrow or active; it is decommissioned.",
        ),
        (
            make_device(tree["globex"], make_version(tree["globex"], slug="g"), "GX"),
            "The successor must come from the same manufacturer.",
        ),
        (
            make_device(tree["hospital"], version, "HOS"),
            "The successor must belong to the same organization.",
        ),
        (old, "A device cannot replace itself."),
    ]
    for new, message in cases:
        with pytest.raises(ValidationError) as error:
            replacement.device_replace(actor=SYSTEM, old=old, new=new)
        assert error.value.message_dict == {"successor": [message]}
    gone = make_device(tree["retail"], version, "GONE", state="decommissioned")
    with pytest.raises(ValidationError) as error:
        replacement.device_replace(
            actor=SYSTEM, old=gone, new=make_device(tree["retail"], version, "N")
        )
    assert error.value.message_dict == {
        "state": ["Cannot replace a device that is decommissioned."]
    }
    old.refresh_from_db()
    assert (old.state, old.replaced_by_id) == ("active", None)
