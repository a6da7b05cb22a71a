"""Enrollment applies provisioning templates (the organization's over the profile's) and records
the result on the device; open fleet pages of the device's organization hear about it."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.devices.models import Device
from apps.profiles import provisioning
from tests.accounts.test_consumers import headers_for, live
from tests.factories import make_member

from .support import body, claim_policy, claim_token, enroll, make_profile, new_key


def templates(tree, profile) -> list[Any]:
    return [
        provisioning.template_create(
            actor=SYSTEM,
            organization=tree["acme"],
            name="Sensor defaults",
            profile=profile,
            configuration={"brightness": 50, "mode": "kiosk", "ntp": {"server": "pool"}},
            heartbeat_interval_seconds=30,
            software={"firmware": "1.0.0"},
        ),
        provisioning.template_create(
            actor=SYSTEM,
            organization=tree["retail"],
            name="Retail wide",
            configuration={"locale": "fr", "ntp": {"zone": "Europe/Paris"}},
            routing_labels=["retail", "eu"],
        ),
        provisioning.template_create(
            actor=SYSTEM,
            organization=tree["retail"],
            name="Retail sensors",
            profile=profile,
            configuration={"brightness": 80},
            software={"firmware": "1.1.0"},
            heartbeat_missed_beats=5,
        ),
    ]


@pytest.mark.django_db
def test_enrollment_applies_the_templates_and_records_them(tree):
    profile = make_profile(tree["acme"])
    applied = templates(tree, profile)
    token = claim_token(claim_policy(tree["acme"], profile, target_organization=tree["store"]))
    response = enroll(body("SN-P", token=token, key=new_key()))
    assert response.status_code == 201, response.content
    merged = {
        "brightness": 80,
        "mode": "kiosk",
        "ntp": {"server": "pool", "zone": "Europe/Paris"},
        "locale": "fr",
    }
    assert response.json()["configuration"] == merged
    assert response.json()["heartbeat"] == {"interval_seconds": 30, "missed_beats": 5}
    device = Device.objects.get(serial="SN-P")
    recorded = dict(device.provisioning)
    assert recorded.pop("applied_at")
    assert recorded == {
        "templates": [{"id": str(template.pk), "name": template.name} for template in applied],
        "configuration": merged,
        "heartbeat": {"interval_seconds": 30, "missed_beats": 5},
        "routing_labels": ["retail", "eu"],
        "software": {"firmware": "1.1.0"},
        "transition": "enroll",
    }
    # what the device got is history: a later template change does not rewrite it
    provisioning.template_update(
        actor=SYSTEM, template=applied[2], configuration={"brightness": 10}
    )
    device.refresh_from_db()
    assert device.provisioning["configuration"]["brightness"] == 80


@pytest.mark.django_db(transaction=True)
def test_an_enrolled_device_is_pushed_to_open_fleet_pages(tree):
    profile = make_profile(tree["acme"])
    token = claim_token(claim_policy(tree["acme"], profile, target_organization=tree["retail"]))
    retail_viewer = headers_for(make_member(tree["retail"], Role.VIEWER))
    globex_viewer = headers_for(make_member(tree["globex"], Role.VIEWER))

    def enroll_one() -> Any:
        return enroll(body("SN-L", token=token, key=new_key()))

    async def scenario() -> list[Any]:
        ours, theirs = live(retail_viewer), live(globex_viewer)
        await ours.connect()
        await theirs.connect()
        received = [await ours.receive_json_from(timeout=5), await theirs.receive_json_from()]
        response = await sync_to_async(enroll_one)()
        received.append(response.status_code)
        received.append(await ours.receive_json_from(timeout=5))
        received.append(await theirs.receive_nothing(timeout=0.5))
        await ours.disconnect()
        await theirs.disconnect()
        return received

    received = async_to_sync(scenario)()
    device = Device.objects.get(serial="SN-L")
    assert received == [
        {"type": "hello", "organizations": 2},
        {"type": "hello", "organizations": 1},
        201,
        {"type": "device.enrolled", "id": str(device.pk), "serial": "SN-L", "state": "active"},
        True,
    ]
