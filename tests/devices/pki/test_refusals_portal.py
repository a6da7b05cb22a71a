"""The certificates page lists what the broker refused of the organization's devices."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from apps.accounts.roles import Role
from apps.devices import refusals
from apps.devices.models import BrokerRefusal
from tests.factories import make_member

from .support import fleet_device

pytestmark = pytest.mark.django_db


def refuse(device, report_id: str, reason: str, count: int, topic: str = "") -> None:
    report = refusals.Refusal(report_id, reason, count, username=str(device.pk), topic=topic)
    assert refusals.record([report]) == 1


def test_the_page_shows_the_last_days_refusals_of_its_devices_with_totals(tree):
    ours, theirs = fleet_device(tree["retail"], "OURS"), fleet_device(tree["globex"], "THEIRS")
    refuse(ours, "r1", "acl_publish", 3, "devices/x/telemetry")
    refuse(ours, "r2", "acl_publish", 2, "devices/y/telemetry")
    refuse(ours, "r3", "acl_subscribe", 1, "#")
    refuse(ours, "old", "oversized", 1)
    BrokerRefusal.objects.filter(report_id="old").update(
        received_at=timezone.now() - dt.timedelta(days=2)
    )
    refuse(theirs, "r4", "acl_publish", 9, "devices/z/telemetry")
    client = Client()
    client.force_login(make_member(tree["acme"], Role.VIEWER))

    content = client.get(f"/o/{tree['acme'].pk}/certificates/").content.decode()
    assert content.count('data-reason="acl_publish"') == 2
    assert content.count('data-reason="acl_subscribe"') == 1
    assert 'data-reason="oversized"' not in content  # older than a day
    assert f'data-device-id="{theirs.pk}"' not in content
    assert (
        "Publish outside its topics: <strong>5</strong> · "
        "Subscription outside its topics: <strong>1</strong>"
    ) in content


def test_nothing_refused_says_so(tree):
    client = Client()
    client.force_login(make_member(tree["acme"], Role.VIEWER))
    content = client.get(f"/o/{tree['acme'].pk}/certificates/").content.decode()
    assert 'id="refusals-empty"' in content and 'id="refusals"' not in content
