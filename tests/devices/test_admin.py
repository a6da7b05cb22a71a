"""The registry back office: prefix search, no full counts, actions through the services."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from apps.accounts.models import User
from apps.core.models import AuditLog
from apps.devices.models import Device
from tests.factories import make_member

from .registry_support import make_device, make_version

pytestmark = pytest.mark.django_db
URL = "/admin/devices/device/"


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root@fleetops.example", "pw-12345678"))
    return client


def test_search_is_by_serial_prefix_or_exact_id(tree, root):
    version = make_version(tree["acme"])
    first = make_device(tree["acme"], version, "AB-1")
    make_device(tree["acme"], version, "AB-2")
    make_device(tree["acme"], version, "XAB-3")
    response = root.get(URL, {"q": "AB-"})
    assert response.status_code == 200
    assert sorted(d.serial for d in response.context["cl"].result_list) == ["AB-1", "AB-2"]
    response = root.get(URL, {"q": str(first.pk)})
    assert [d.serial for d in response.context["cl"].result_list] == ["AB-1"]
    assert response.context["cl"].show_full_result_count is False


def test_an_action_moves_devices_through_the_service(tree, root):
    version = make_version(tree["acme"])
    active = make_device(tree["acme"], version, "A", state="active")
    escrow = make_device(tree["acme"], version, "E", state="escrow")
    response = root.post(
        URL,
        {"action": "enter_maintenance", "_selected_action": [str(active.pk), str(escrow.pk)]},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [
        "enter_maintenance: 1 device(s) moved.",
        "Refused: E: Cannot enter_maintenance a device that is escrow.",
    ]
    assert dict(Device.objects.values_list("serial", "state")) == {
        "A": "maintenance",
        "E": "escrow",
    }
    row = AuditLog.objects.get(action="device.transition")
    assert (row.source, row.actor_label, row.object_id) == (
        "admin",
        "root@fleetops.example",
        str(active.pk),
    )


def test_staff_see_only_their_scope(tree):
    version = make_version(tree["acme"])
    make_device(tree["retail"], version, "MINE")
    make_device(tree["globex"], make_version(tree["globex"], slug="g"), "THEIRS")
    user = make_member(tree["retail"], "viewer")
    user.is_staff = True
    user.save()
    user.user_permissions.set(Permission.objects.filter(codename="view_device"))
    client = Client()
    client.force_login(user)
    response = client.get(URL)
    assert [d.serial for d in response.context["cl"].result_list] == ["MINE"]
