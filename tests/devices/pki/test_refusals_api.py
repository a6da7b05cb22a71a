"""``GET /api/v1/broker-refusals/``: the authorization matrix, exact bodies, filters."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.roles import Role
from apps.devices import refusals
from apps.devices.models import BrokerRefusal
from tests.authz import Call, Case, assert_authz_matrix, iso
from tests.factories import make_member

from .support import fleet_device

pytestmark = pytest.mark.django_db

VIEWERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.APPROVER, Role.TECHNICIAN, Role.VIEWER}
URL = "/api/v1/broker-refusals/"


def refused(device: Any, reason: str = "acl_publish", topic: str = "devices/x/telemetry") -> Any:
    report = refusals.Refusal(
        report_id=f"plugin:{device.pk}:{reason}",
        reason=reason,
        count=3,
        username=str(device.pk),
        address="10.0.0.7",
        topic=topic,
    )
    assert refusals.record([report]) == 1
    return BrokerRefusal.objects.get(report_id=report.report_id)


def body(row: BrokerRefusal) -> dict[str, Any]:
    return {
        "id": str(row.pk),
        "received_at": iso(row.received_at),
        "organization": str(row.organization_id),
        "device": str(row.device_id),
        "reason": row.reason,
        "count": 3,
        "username": row.username,
        "address": "10.0.0.7",
        "topic": row.topic,
        "detail": "",
    }


def retail_refusal(world: Any) -> BrokerRefusal:
    return refused(fleet_device(world.tree["retail"]))


def test_list_matrix(authz_world):
    assert_authz_matrix(
        authz_world,
        Case(
            permission="credential.view",
            allowed=VIEWERS,
            setup=retail_refusal,
            request=lambda a: Call("get", URL),
            expect=lambda a, r: r.json()["results"] == [body(a.target)] or pytest.fail(),
            listing=True,
        ),
    )


def test_retrieve_matrix(authz_world):
    assert_authz_matrix(
        authz_world,
        Case(
            permission="credential.view",
            allowed=VIEWERS,
            setup=retail_refusal,
            request=lambda a: Call("get", f"{URL}{a.target.pk}/"),
            expect=lambda a, r: r.json() == body(a.target) or pytest.fail(),
        ),
    )


def test_filters_by_device_and_reason_and_hides_unattributed_refusals(tree):
    one, two = fleet_device(tree["acme"], "SN-1"), fleet_device(tree["acme"], "SN-2")
    first = refused(one)
    refused(one, "acl_subscribe", "#")
    refused(two)
    assert refusals.record([refusals.Refusal("log:x#1", "tls_handshake", address="1.2.3.4")]) == 1
    client = APIClient()
    client.force_login(make_member(tree["acme"], Role.VIEWER))

    response = client.get(URL, {"device": str(one.pk), "reason": "acl_publish"})
    assert response.status_code == 200
    assert response.json()["results"] == [body(first)]
    assert len(client.get(URL).json()["results"]) == 3  # the handshake belongs to no one
    bad = client.get(URL, {"reason": "nope"})
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"]["reason"] == ['"nope" is not a valid choice.']
