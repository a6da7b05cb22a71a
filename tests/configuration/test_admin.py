"""The configuration back office: every list answers, no full counts on fleet-sized tables,
the recompute action goes through the service and is audited."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.models import User
from apps.configuration.models import (
    ConfigurationVersion,
    DeviceConfiguration,
    OrganizationConfiguration,
)
from apps.core.models import AuditLog

from .support import make_device, run, set_spec


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root@fleetops.example", "pw-12345678"))
    return client


@pytest.mark.parametrize(
    "model",
    [
        "organizationconfiguration",
        "groupconfiguration",
        "deviceconfiguration",
        "configurationversion",
        "deviceconfigurationstate",
    ],
)
def test_each_list_answers(tree, version, root, model):
    make_device(version, tree["acme"])
    run(tree["acme"], set_spec("organization", tree["acme"].pk, values={"brightness": 1}))
    response = root.get(f"/admin/configuration/{model}/")
    assert response.status_code == 200


def test_recompute_gives_a_new_version_only_where_the_layers_changed(tree, version, root):
    changed, same = make_device(version, tree["acme"]), make_device(version, tree["acme"])
    run(tree["acme"], set_spec("organization", tree["acme"].pk, values={"brightness": 1}))
    # a layer edited behind the platform's back (a data fix): recompute makes it desired
    OrganizationConfiguration.objects.update(values={"brightness": 2})
    DeviceConfiguration.objects.create(
        organization=tree["acme"], device=same, overrides={"brightness": 1}
    )
    response = root.post(
        "/admin/configuration/deviceconfigurationstate/",
        {"action": "recompute", "_selected_action": [str(changed.pk), str(same.pk)]},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [
        "1 new versions, 1 unchanged, 0 invalid."
    ]
    assert ConfigurationVersion.objects.filter(device=changed).count() == 2
    assert ConfigurationVersion.objects.filter(device=same).count() == 1
    row = AuditLog.objects.get(action="configuration.recompute")
    assert (row.source, row.actor_label, row.changes) == (
        "admin",
        "root@fleetops.example",
        {"changed": 1, "unchanged": 1},
    )
