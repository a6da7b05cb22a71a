"""The effective configuration: layering and precedence as a table, variables, schema errors."""

from __future__ import annotations

from typing import Any

import pytest

from apps.configuration import layering
from apps.configuration.models import (
    DeviceConfiguration,
    GroupConfiguration,
    OrganizationConfiguration,
)
from apps.profiles.models import ProvisioningTemplate

from .support import make_device, make_group

DEFAULTS = {"brightness": 50, "locale": "en", "network": {"apn": "internet"}}


def _layers(tree, version, device, names: list[str]) -> None:
    """Create the named layers for ``device`` (of retail, below acme)."""
    low = make_group(tree["acme"], "b-low", [device])
    high = make_group(tree["acme"], "a-high", [device])
    builders: dict[str, Any] = {
        "template": lambda: ProvisioningTemplate.objects.create(
            organization=tree["acme"],
            profile=version.profile,
            name="base",
            configuration={"locale": "fr", "network": {"mtu": 1400}},
        ),
        "acme": lambda: OrganizationConfiguration.objects.create(
            organization=tree["acme"], values={"brightness": 60, "tags": ["acme"]}
        ),
        "retail": lambda: OrganizationConfiguration.objects.create(
            organization=tree["retail"], values={"brightness": 65}
        ),
        "group_low": lambda: GroupConfiguration.objects.create(
            organization=tree["acme"],
            group=low,
            priority=1,
            values={"brightness": 70, "tags": ["x", "y"], "network": {"apn": "low"}},
        ),
        "group_high": lambda: GroupConfiguration.objects.create(
            organization=tree["acme"], group=high, priority=2, values={"brightness": 80}
        ),
        "device": lambda: DeviceConfiguration.objects.create(
            organization=tree["retail"], device=device, overrides={"brightness": 90, "locale": "de"}
        ),
    }
    for name in names:
        builders[name]()


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ([], DEFAULTS),
        (["template"], {**DEFAULTS, "locale": "fr", "network": {"apn": "internet", "mtu": 1400}}),
        (
            ["template", "acme"],
            {
                **DEFAULTS,
                "brightness": 60,
                "locale": "fr",
                "tags": ["acme"],
                "network": {"apn": "internet", "mtu": 1400},
            },
        ),
        (["acme", "retail"], {**DEFAULTS, "brightness": 65, "tags": ["acme"]}),
        (
            ["retail", "group_low"],
            {**DEFAULTS, "brightness": 70, "tags": ["x", "y"], "network": {"apn": "low"}},
        ),
        (
            ["acme", "group_low"],
            {**DEFAULTS, "brightness": 70, "tags": ["x", "y"], "network": {"apn": "low"}},
        ),
        (
            ["group_low", "group_high"],
            {**DEFAULTS, "brightness": 80, "tags": ["x", "y"], "network": {"apn": "low"}},
        ),
        (["group_high", "device"], {**DEFAULTS, "brightness": 90, "locale": "de"}),
        (
            ["template", "acme", "retail", "group_low", "group_high", "device"],
            {
                "brightness": 90,
                "locale": "de",
                "tags": ["x", "y"],
                "network": {"apn": "low", "mtu": 1400},
            },
        ),
    ],
    ids=[
        "profile defaults only",
        "template over defaults (objects merge)",
        "organization over template",
        "deeper organization wins",
        "group over organization",
        "group lists replace organization lists",
        "higher priority group wins",
        "device overrides win",
        "every layer",
    ],
)
def test_layers_apply_in_their_precedence(tree, version, layers, expected):
    device = make_device(version, tree["retail"])
    _layers(tree, version, device, layers)
    effective = layering.compute([device.pk])[device.pk]
    assert (effective.document, effective.errors) == (expected, [])


def test_a_group_the_device_is_not_in_does_not_apply(tree, version):
    device = make_device(version, tree["retail"])
    other = make_device(version, tree["retail"])
    group = make_group(tree["acme"], "others", [other])
    GroupConfiguration.objects.create(
        organization=tree["acme"], group=group, values={"brightness": 1}
    )
    computed = layering.compute([device.pk, other.pk])
    assert computed[device.pk].document["brightness"] == 50
    assert computed[other.pk].document["brightness"] == 1


def test_a_dynamic_group_applies_to_the_devices_its_filter_matches(tree, version):
    tagged = make_device(version, tree["acme"], tags=["lobby"])
    plain = make_device(version, tree["acme"])
    from apps.devices.models import DeviceGroup

    group = DeviceGroup.objects.create(
        organization=tree["acme"], name="lobby", kind="dynamic", filter={"tags_any": ["lobby"]}
    )
    GroupConfiguration.objects.create(
        organization=tree["acme"], group=group, values={"locale": "it"}
    )
    computed = layering.compute([tagged.pk, plain.pk])
    assert (computed[tagged.pk].document["locale"], computed[plain.pk].document["locale"]) == (
        "it",
        "en",
    )


def test_variables_follow_their_precedence_and_keep_their_type(tree, version):
    device = make_device(version, tree["retail"], serial="SN-42", attributes={"model": "M3"})
    group = make_group(tree["acme"], "g", [device])
    OrganizationConfiguration.objects.create(
        organization=tree["acme"],
        values={
            "hostname": "{{ device.serial }}-{{ device.attributes.model }}-{{ var.site }}",
            "locale": "{{ org.locale }}",
            "port": "{{ var.port }}",
        },
        variables={"site": "acme", "locale": "pt", "port": 1883},
    )
    OrganizationConfiguration.objects.create(
        organization=tree["retail"], variables={"site": "retail"}
    )
    GroupConfiguration.objects.create(
        organization=tree["acme"], group=group, variables={"site": "group", "port": 8883}
    )
    effective = layering.compute([device.pk])[device.pk]
    assert (
        effective.document["hostname"],
        effective.document["locale"],
        effective.document["port"],
    ) == ("SN-42-M3-group", "pt", 8883)
    DeviceConfiguration.objects.create(
        organization=tree["retail"], device=device, variables={"site": "mine"}
    )
    effective = layering.compute([device.pk])[device.pk]
    assert effective.document["hostname"] == "SN-42-M3-mine"
    assert effective.errors == []


def test_an_unknown_variable_and_a_schema_violation_are_clear_errors(tree, version):
    device = make_device(version, tree["acme"])
    OrganizationConfiguration.objects.create(
        organization=tree["acme"], values={"hostname": "{{ org.nope }}"}
    )
    assert layering.compute([device.pk])[device.pk].errors == [
        "Unknown variable 'org.nope' at hostname."
    ]
    OrganizationConfiguration.objects.filter(organization=tree["acme"]).update(
        values={"brightness": 300, "network": {"mtu": "big"}}
    )
    assert layering.compute([device.pk])[device.pk].errors == [
        "brightness: 300 is greater than the maximum of 100",
        "network.mtu: 'big' is not of type 'integer'",
    ]


def test_merging_and_applying_a_change_never_modify_their_inputs():
    from apps.configuration.documents import deep_merge

    base = {"network": {"apn": "a", "mtu": 1}, "tags": ["x"]}
    override = {"network": {"apn": "b"}, "tags": ["y"]}
    assert deep_merge(base, override) == {"network": {"apn": "b", "mtu": 1}, "tags": ["y"]}
    change = layering.LayerChange(layer="device", layer_id=None, unset=("network.mtu",))  # type: ignore[arg-type]
    values, variables = change.apply(base, {})
    assert (values, variables) == ({"network": {"apn": "a"}, "tags": ["x"]}, {})
    assert base == {"network": {"apn": "a", "mtu": 1}, "tags": ["x"]}
    assert override == {"network": {"apn": "b"}, "tags": ["y"]}
