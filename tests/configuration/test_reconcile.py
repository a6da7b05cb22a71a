"""Group membership changes reach the desired configuration without a change request: the
``configuration.reconcile`` consumer recomputes the devices concerned."""

from __future__ import annotations

from apps.configuration.models import ConfigurationVersion
from apps.core import events
from apps.core.actors import SYSTEM
from apps.core.models import EventDelivery
from apps.devices.groups import group_add_devices, group_remove_devices
from apps.devices.services import device_update

from .support import make_device, make_group, run, set_spec


def deliver_reconciliations() -> int:
    delivered = 0
    for lease in events.claim_due(limit=100):
        delivery = EventDelivery.objects.get(pk=lease.delivery_id)
        if delivery.consumer == "configuration.reconcile":
            assert events.deliver(lease) == "delivered"
            delivered += 1
    return delivered


def documents(device) -> list[tuple[int, int, bool]]:
    return [
        (v.version, v.document["brightness"], v.change_request_id is None)
        for v in ConfigurationVersion.objects.filter(device=device).order_by("version")
    ]


def test_joining_and_leaving_a_configured_group_moves_the_desired_configuration(tree, version):
    member = make_device(version, tree["acme"])
    newcomer = make_device(version, tree["acme"])
    group = make_group(tree["acme"], "lobby", [member])
    run(tree["acme"], set_spec("group", group.pk, values={"brightness": 80}))
    deliver_reconciliations()
    group_add_devices(actor=SYSTEM, group=group, device_ids=[newcomer.pk])
    assert deliver_reconciliations() == 1
    assert documents(newcomer) == [(1, 80, True)]
    group_remove_devices(actor=SYSTEM, group=group, device_ids=[member.pk])
    assert deliver_reconciliations() == 1
    assert documents(member) == [(1, 80, False), (2, 50, True)]
    assert documents(newcomer) == [(1, 80, True)]  # unchanged: no new version


def test_a_device_attribute_change_reaches_a_configuration_that_uses_it(tree, version):
    device = make_device(version, tree["acme"], attributes={"floor": 1})
    run(
        tree["acme"],
        set_spec("device", device.pk, values={"brightness": "{{ device.attributes.floor }}"}),
    )
    deliver_reconciliations()
    device_update(actor=SYSTEM, device=device, attributes={"floor": 3})
    assert deliver_reconciliations() == 1
    assert documents(device) == [(1, 1, False), (2, 3, True)]
