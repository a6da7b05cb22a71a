"""The configuration API: the authorization matrix on every endpoint, and exact answers."""

from __future__ import annotations

import pytest

from apps.accounts.roles import Role
from apps.configuration.documents import canonical_checksum
from apps.configuration.models import (
    DeviceConfiguration,
    DeviceConfigurationState,
    GroupConfiguration,
    OrganizationConfiguration,
)
from tests.authz import Call, Case, assert_authz_matrix, make_principal

from .support import make_device, make_group, run, set_spec

VIEWERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.APPROVER, Role.TECHNICIAN, Role.VIEWER}
BASE = {"brightness": 50, "locale": "en", "network": {"apn": "internet"}}


@pytest.fixture
def configured(tree, version):
    """A device of acme with two versions, and every kind of layer."""
    device = make_device(version, tree["acme"], serial="SN-1")
    group = make_group(tree["acme"], "lobby", [device])
    run(tree["acme"], set_spec("organization", tree["acme"].pk, values={"locale": "fr"}))
    run(tree["acme"], set_spec("group", group.pk, values={"brightness": 70}, priority=2))
    run(tree["acme"], set_spec("device", device.pk, variables={"site": "hq"}))
    return device


def _case(path: str, expect, listing: bool = False) -> Case:
    return Case(
        permission="configuration.view",
        allowed=VIEWERS,
        setup=lambda world: None,
        request=lambda attempt: Call("get", path),
        expect=expect,
        listing=listing,
    )


def test_device_states_list_and_detail(authz_world, configured):
    device = configured
    document = {**BASE, "brightness": 70, "locale": "fr"}

    def listed(attempt, response):
        assert [row["device"] for row in response.json()["results"]] == [str(device.pk)]
        row = response.json()["results"][0]
        assert (row["device_serial"], row["status"], row["desired_version"]) == (
            "SN-1",
            "pending",
            2,
        )

    assert_authz_matrix(authz_world, _case("/api/v1/configuration/devices/", listed, listing=True))

    def detail(attempt, response):
        body = response.json()
        assert (body["desired_version"], body["desired_checksum"], body["configuration"]) == (
            2,
            canonical_checksum(document),
            document,
        )

    assert_authz_matrix(authz_world, _case(f"/api/v1/configuration/devices/{device.pk}/", detail))


def test_summary_effective_history_and_version_diff(authz_world, configured):
    device = configured

    def summary(attempt, response):
        assert response.json() == {
            "counts": {"pending": 1, "in_sync": 0, "drifted": 0, "error": 0, "total": 1}
        }

    def outsider(attempt, response):
        assert (response.status_code, response.json()["counts"]["total"]) == (200, 0)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="configuration.view",
            allowed=VIEWERS,
            request=lambda attempt: Call("get", "/api/v1/configuration/devices/summary/"),
            expect=summary,
            outsider_expect=outsider,
        ),
    )

    def effective(attempt, response):
        assert response.json() == {
            "device": str(device.pk),
            "serial": "SN-1",
            "checksum": canonical_checksum({**BASE, "brightness": 70, "locale": "fr"}),
            "configuration": {**BASE, "brightness": 70, "locale": "fr"},
            "errors": [],
            "pinned_version": None,
        }

    assert_authz_matrix(
        authz_world, _case(f"/api/v1/configuration/devices/{device.pk}/effective/", effective)
    )

    def history(attempt, response):
        assert [(row["version"], row["document"]) for row in response.json()["results"]] == [
            (2, {**BASE, "brightness": 70, "locale": "fr"}),
            (1, {**BASE, "locale": "fr"}),
        ]

    assert_authz_matrix(
        authz_world, _case(f"/api/v1/configuration/devices/{device.pk}/versions/", history)
    )

    def diff(attempt, response):
        body = response.json()
        assert (body["version"]["version"], body["against"], body["diff"]) == (
            2,
            1,
            [{"op": "replace", "path": "brightness", "from": 50, "to": 70}],
        )

    assert_authz_matrix(
        authz_world, _case(f"/api/v1/configuration/devices/{device.pk}/versions/2/", diff)
    )


def test_layer_listings(authz_world, configured):
    device = configured

    def organizations(attempt, response):
        layer = OrganizationConfiguration.objects.get()
        assert [(r["id"], r["values"]) for r in response.json()["results"]] == [
            (str(layer.pk), {"locale": "fr"})
        ]

    assert_authz_matrix(
        authz_world,
        _case("/api/v1/configuration/layers/organizations/", organizations, listing=True),
    )

    def groups(attempt, response):
        layer = GroupConfiguration.objects.get()
        assert [
            (r["id"], r["group_name"], r["priority"], r["values"])
            for r in response.json()["results"]
        ] == [(str(layer.pk), "lobby", 2, {"brightness": 70})]

    assert_authz_matrix(
        authz_world, _case("/api/v1/configuration/layers/groups/", groups, listing=True)
    )

    def devices(attempt, response):
        layer = DeviceConfiguration.objects.get()
        assert [(r["id"], r["device"], r["variables"]) for r in response.json()["results"]] == [
            (str(layer.pk), str(device.pk), {"site": "hq"})
        ]

    assert_authz_matrix(
        authz_world, _case("/api/v1/configuration/layers/devices/", devices, listing=True)
    )


def test_a_missing_version_and_a_foreign_device_are_404(tree, version, configured):
    viewer = make_principal("session", tree["acme"], Role.VIEWER)
    other = make_device(version, tree["globex"])
    assert (
        viewer.client.get(f"/api/v1/configuration/devices/{configured.pk}/versions/9/").status_code
        == 404
    )
    assert (
        viewer.client.get(f"/api/v1/configuration/devices/{other.pk}/effective/").status_code == 404
    )
    assert (
        viewer.client.get("/api/v1/configuration/devices/?status=drifted").json()["results"] == []
    )
    assert DeviceConfigurationState.objects.count() == 1


def test_the_state_list_costs_the_same_whatever_the_page_size(tree, version):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    viewer = make_principal("api_key", tree["acme"], Role.VIEWER)
    viewer.client.get("/api/v1/configuration/devices/")  # warm caches (the key's last use...)
    counts = []
    for _ in range(2):
        for _ in range(3):
            device = make_device(version, tree["acme"])
            run(tree["acme"], set_spec("device", device.pk, values={"brightness": 1}))
        with CaptureQueriesContext(connection) as queries:
            response = viewer.client.get("/api/v1/configuration/devices/")
        assert response.status_code == 200
        counts.append((len(response.json()["results"]), len(queries)))
    assert [rows for rows, _ in counts] == [3, 6]
    assert counts[0][1] == counts[1][1]
