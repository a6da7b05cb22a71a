from __future__ import annotations

import pytest
from django.core.management import call_command

from apps.devices.choices import DeviceState, TransferStatus
from apps.devices.models import Device, DeviceGroup, Transfer
from apps.profiles.models import DeviceProfile

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_the_fleet_demo_loads_a_fleet_with_its_story_once(capsys):
    call_command("load_demo", force=True)
    call_command("load_fleet_demo")
    devices = Device.objects.all()
    assert devices.count() == 3100
    by_org = {}
    for slug in devices.values_list("organization__slug", flat=True):
        by_org[slug] = by_org.get(slug, 0) + 1
    assert by_org == {"acme-robotics": 1499, "northwind-hospitals": 601, "globex-signage": 1000}
    assert DeviceProfile.objects.count() == 3
    assert devices.filter(state=DeviceState.MAINTENANCE).count() == 6
    assert devices.filter(state=DeviceState.SUSPENDED).count() == 2
    assert devices.filter(state=DeviceState.REPLACED).count() == 1
    replaced = devices.get(state=DeviceState.REPLACED)
    assert replaced.replaced_by is not None
    assert set(DeviceGroup.objects.values_list("name", "kind")) == {
        ("Pilot fleet", "static"),
        ("EU couriers", "dynamic"),
        ("Beta screens", "dynamic"),
    }
    assert DeviceGroup.objects.get(name="Pilot fleet").devices.count() == 20
    assert Transfer.objects.filter(status=TransferStatus.PENDING).count() == 1
    assert Transfer.objects.filter(status=TransferStatus.ACCEPTED).count() == 1

    call_command("load_fleet_demo")
    assert Device.objects.count() == 3100
    assert "Fleet demo already loaded; nothing to do." in capsys.readouterr().out
