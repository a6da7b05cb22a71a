"""Two layers of one device changed at the same time: the second recompute waits for the
first and sees its layer, so the final desired configuration holds both changes."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from apps.configuration import services
from apps.configuration.layering import LayerChange
from apps.configuration.models import ConfigurationVersion, DeviceConfigurationState
from apps.core.actors import SYSTEM

from .support import make_device, make_group, make_version

pytestmark = pytest.mark.django_db(transaction=True)


def change(group, **values) -> LayerChange:
    return LayerChange(layer="group", layer_id=group.pk, values=values)


def test_concurrent_layer_changes_of_one_device_both_reach_its_desired_configuration(tree):
    device = make_device(make_version(tree["acme"]), tree["acme"])
    first, second = make_group(tree["acme"], "a", [device]), make_group(tree["acme"], "b", [device])
    first_done, release = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def hold_first() -> None:
        try:
            with transaction.atomic():
                services.layer_write(
                    change=change(first, brightness=10), organization=tree["acme"], actor=SYSTEM
                )
                services.recompute(device_ids=[device.pk], actor=SYSTEM)
                first_done.set()
                release.wait(10)
        except BaseException as error:
            failures.append(error)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_first)
    holder.start()
    assert first_done.wait(10)

    def change_second() -> None:
        try:
            with transaction.atomic():
                services.layer_write(
                    change=change(second, locale="fr"), organization=tree["acme"], actor=SYSTEM
                )
                services.recompute(device_ids=[device.pk], actor=SYSTEM)
        except BaseException as error:
            failures.append(error)
        finally:
            connection.close()

    waiter = threading.Thread(target=change_second)
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive()  # blocked on the first one's state lock
    release.set()
    holder.join(10)
    waiter.join(10)
    assert failures == []
    versions = list(
        ConfigurationVersion.objects.filter(device=device)
        .order_by("version")
        .values_list("version", "document__brightness", "document__locale")
    )
    assert versions == [(1, 10, "en"), (2, 10, "fr")]
    assert DeviceConfigurationState.objects.get(device=device).desired_version == 2
