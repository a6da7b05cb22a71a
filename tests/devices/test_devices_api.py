"""The registry API: the authorization matrix on every endpoint, exact bodies, query budgets."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import Job
from apps.devices import services, transfers
from apps.devices.models import Device, Transfer
from tests.authz import Call, Case, assert_authz_matrix, error, iso, last_audit
from tests.factories import make_member

from .registry_support import make_device, make_version

pytestmark = pytest.mark.django_db

URL = "/api/v1/devices/"
VIEWERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.APPROVER, Role.TECHNICIAN, Role.VIEWER}
ADDERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR}
CHANGERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.TECHNICIAN}
MOVERS = CHANGERS  # device.transition
TRANSFERRERS = {Role.OWNER, Role.ADMIN}


def device_json(device: Device) -> dict[str, Any]:
    device.refresh_from_db()
    return {
        "id": str(device.pk),
        "organization": str(device.organization_id),
        "manufacturer": str(device.manufacturer_id),
        "profile": str(device.profile_version.profile_id),
        "profile_version": str(device.profile_version_id),
        "serial": device.serial,
        "name": device.name,
        "state": device.state,
        "state_changed_at": iso(device.state_changed_at),
        "tags": device.tags,
        "attributes": device.attributes,
        "latitude": device.latitude,
        "longitude": device.longitude,
        "site": str(device.site_id) if device.site_id else None,
        "inventory": device.inventory,
        "firmware_version": device.firmware_version,
        "connectivity": device.connectivity,
        "last_seen_at": iso(device.last_seen_at),
        "replaced_by": str(device.replaced_by_id) if device.replaced_by_id else None,
        "created_at": iso(device.created_at),
        "updated_at": iso(device.updated_at),
    }


def retail_device(world, state: str = "active", serial: str = "SN-1") -> Device:
    version = make_version(world.tree["acme"], slug=f"p-{serial.lower()}")
    return make_device(world.tree["retail"], version, serial, state=state, tags=["eu"])


def acme_escrow(world) -> Device:
    return make_device(world.tree["acme"], make_version(world.tree["acme"]), "ESC-1")


def devices_state(attempt) -> list[tuple[Any, ...]]:
    return list(
        Device.objects.order_by("id").values_list(
            "id", "organization_id", "state", "name", "claim_code_hash", "replaced_by_id"
        )
    )


def transfers_state(attempt) -> list[tuple[Any, ...]]:
    return list(Transfer.objects.order_by("id").values_list("id", "status")) + devices_state(
        attempt
    )


def matrix(world, **fields: Any) -> None:
    assert_authz_matrix(world, Case(**fields))


# --- devices -----------------------------------------------------------------------------------


def test_list_matrix(authz_world):
    matrix(
        authz_world,
        permission="device.view",
        allowed=VIEWERS,
        setup=retail_device,
        request=lambda a: Call("get", URL, {"state": "active", "tags": "eu"}),
        expect=lambda a, r: r.json()["results"] == [device_json(a.target)] or pytest.fail(),
        listing=True,
    )


def test_retrieve_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == device_json(attempt.target)

    matrix(
        authz_world,
        permission="device.view",
        allowed=VIEWERS,
        setup=retail_device,
        request=lambda a: Call("get", f"{URL}{a.target.pk}/"),
        expect=expect,
    )


def test_create_matrix(authz_world):
    def setup(world):
        return make_version(world.tree["acme"])

    def expect(attempt, response):
        device = Device.objects.get(serial="NEW-1")
        assert response.json() == device_json(device)
        assert (device.organization_id, device.state, device.attributes) == (
            attempt.world.tree["retail"].pk,
            "escrow",
            {"color": "red"},
        )
        assert last_audit("device.register").actor_label == attempt.principal.label

    matrix(
        authz_world,
        permission="device.add",
        allowed=ADDERS,
        setup=setup,
        request=lambda a: Call(
            "post",
            URL,
            {
                "organization": str(a.world.tree["retail"].pk),
                "profile_version": str(a.target.pk),
                "serial": "NEW-1",
                "attributes": {"color": "red"},
            },
        ),
        status=201,
        state=devices_state,
        expect=expect,
    )


def test_update_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == device_json(attempt.target)
        assert (attempt.target.name, attempt.target.tags) == ("Renamed", ["a", "b"])

    matrix(
        authz_world,
        permission="device.change",
        allowed=CHANGERS,
        setup=retail_device,
        request=lambda a: Call(
            "patch", f"{URL}{a.target.pk}/", {"name": "Renamed", "tags": ["a", "b"]}
        ),
        state=devices_state,
        expect=expect,
    )


def test_transition_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == device_json(attempt.target)
        assert attempt.target.state == "maintenance"
        assert last_audit("device.transition").changes == {
            "state": ["active", "maintenance"],
            "transition": "enter_maintenance",
            "reason": "patching",
        }

    matrix(
        authz_world,
        permission="device.transition",
        allowed=MOVERS,
        setup=retail_device,
        request=lambda a: Call(
            "post",
            f"{URL}{a.target.pk}/transition/",
            {"transition": "enter_maintenance", "reason": "patching"},
        ),
        state=devices_state,
        expect=expect,
    )


def test_decommission_needs_the_delete_permission(authz_world):
    def expect(attempt, response):
        assert response.json()["state"] == "decommissioned"

    matrix(
        authz_world,
        permission="device.delete",
        allowed=TRANSFERRERS,
        setup=retail_device,
        request=lambda a: Call(
            "post", f"{URL}{a.target.pk}/transition/", {"transition": "decommission"}
        ),
        state=devices_state,
        expect=expect,
    )


def test_bulk_transition_matrix(authz_world):
    def expect(attempt, response):
        job = Job.objects.get(kind="devices.bulk_transition")
        body = response.json()
        assert (body["id"], body["status"], body["organization"]) == (
            str(job.pk),
            "queued",
            str(attempt.world.home.pk),
        )
        assert (job.params["transition"], job.params["selection"]) == (
            "suspend",
            {"state": ["active"]},
        )

    matrix(
        authz_world,
        permission="device.transition",
        allowed=MOVERS,
        setup=retail_device,
        request=lambda a: Call(
            "post",
            f"{URL}bulk-transition/",
            {
                "organization": str(a.world.home.pk),
                "filter": {"state": ["active"]},
                "transition": "suspend",
            },
        ),
        status=202,
        state=lambda a: Job.objects.count(),
        expect=expect,
    )


def test_transfer_matrix(authz_world):
    def expect(attempt, response):
        transfer = Transfer.objects.get()
        assert response.json() == {
            "id": str(transfer.pk),
            "device": str(attempt.target.pk),
            "from_organization": str(attempt.world.home.pk),
            "to_organization": str(attempt.world.tree["retail"].pk),
            "status": "pending",
            "note": "PO 7",
            "created_by": str(attempt.principal.user.pk) if attempt.principal.user else None,
            "decided_by": None,
            "decided_at": None,
            "created_at": iso(transfer.created_at),
        }

    matrix(
        authz_world,
        permission="device.transfer",
        allowed=TRANSFERRERS,
        setup=acme_escrow,
        request=lambda a: Call(
            "post",
            f"{URL}{a.target.pk}/transfer/",
            {"to_organization": str(a.world.tree["retail"].pk), "note": "PO 7"},
        ),
        status=201,
        state=transfers_state,
        expect=expect,
    )


def test_claim_code_matrix(authz_world):
    def expect(attempt, response):
        code = response.json()["claim_code"]
        assert response.json() == {"id": str(attempt.target.pk), "claim_code": code}
        attempt.target.refresh_from_db()
        assert attempt.target.claim_code_hash == hashlib.sha256(code.encode()).hexdigest()

    matrix(
        authz_world,
        permission="device.transfer",
        allowed=TRANSFERRERS,
        setup=acme_escrow,
        request=lambda a: Call("post", f"{URL}{a.target.pk}/claim-code/"),
        status=201,
        state=devices_state,
        expect=expect,
    )


def test_claim_matrix(authz_world):
    def setup(world):
        device = acme_escrow(world)
        return device, transfers.device_set_claim_code(actor=SYSTEM, device=device)

    def expect(attempt, response):
        device = attempt.target[0]
        assert response.json() == device_json(device)
        assert device.organization_id == attempt.world.tree["retail"].pk
        assert Transfer.objects.get().status == "accepted"

    matrix(
        authz_world,
        permission="device.transfer",
        allowed=TRANSFERRERS,
        setup=setup,
        request=lambda a: Call(
            "post",
            f"{URL}claim/",
            {
                "organization": str(a.world.tree["retail"].pk),
                "manufacturer": str(a.world.home.pk),
                "serial": "ESC-1",
                "claim_code": a.target[1],
            },
        ),
        state=transfers_state,
        expect=expect,
    )


def test_replace_matrix(authz_world):
    def setup(world):
        old = retail_device(world)
        return old, make_device(world.tree["retail"], old.profile_version, "SN-NEW")

    def expect(attempt, response):
        old, new = attempt.target
        assert response.json() == device_json(new)
        old.refresh_from_db()
        assert (old.state, old.replaced_by_id, new.state, new.tags) == (
            "replaced",
            new.pk,
            "active",
            ["eu"],
        )

    matrix(
        authz_world,
        permission="device.transition",
        allowed=MOVERS,
        setup=setup,
        request=lambda a: Call(
            "post", f"{URL}{a.target[0].pk}/replace/", {"successor": str(a.target[1].pk)}
        ),
        state=devices_state,
        expect=expect,
    )


def test_timeline_matrix(authz_world):
    def setup(world):
        device = retail_device(world)
        services.device_transition(actor=SYSTEM, device=device, transition="suspend")
        return device

    def expect(attempt, response):
        body = response.json()
        row = last_audit("device.transition")
        assert body == {
            "results": [
                {
                    "time": iso(row.created_at),
                    "kind": "audit",
                    "action": "device.transition",
                    "actor_label": "system",
                    "summary": "suspend: active → suspended",
                    "changes": {
                        "state": ["active", "suspended"],
                        "transition": "suspend",
                        "reason": "",
                    },
                    "device_id": str(attempt.target.pk),
                    "relation": "self",
                }
            ],
            "next_before": None,
            "next_before_id": None,
        }

    matrix(
        authz_world,
        permission="device.view",
        allowed=VIEWERS,
        setup=setup,
        request=lambda a: Call("get", f"{URL}{a.target.pk}/timeline/"),
        expect=expect,
    )


def test_devices_are_never_deleted(tree):
    device = make_device(tree["acme"], make_version(tree["acme"]), "SN-1")
    client = APIClient()
    assert client.delete(f"{URL}{device.pk}/").status_code == 401
    client.force_login(make_member(tree["acme"], "owner"))
    response = client.delete(f"{URL}{device.pk}/")
    assert (response.status_code, error(response)["code"]) == (405, "method_not_allowed")
    assert Device.objects.filter(pk=device.pk).exists()


def test_validation_errors_use_the_envelope(tree):
    version = make_version(tree["acme"])
    client = APIClient()
    client.force_login(make_member(tree["acme"], "owner"))
    response = client.post(
        URL,
        {
            "organization": str(tree["retail"].pk),
            "profile_version": str(version.pk),
            "serial": "SN-1",
            "attributes": {"floor": "two"},
        },
        format="json",
    )
    assert response.status_code == 400
    assert error(response)["fields"] == {"attributes.floor": ["'two' is not of type 'integer'"]}
    assert Device.objects.count() == 0
    device = make_device(tree["retail"], version, "SN-2", state="escrow")
    response = client.post(f"{URL}{device.pk}/transition/", {"transition": "suspend"}, "json")
    assert (response.status_code, error(response)["fields"]) == (
        400,
        {"state": ["Cannot suspend a device that is escrow."]},
    )


# --- query budgets and sorting ----------------------------------------------------------------


@pytest.mark.parametrize("count", [3, 30])
def test_the_list_costs_the_same_for_3_or_30_devices(tree, count, django_assert_num_queries):
    version = make_version(tree["acme"])
    for index in range(count):
        make_device(tree["retail"], version, f"SN-{index:03d}")
    client = APIClient()
    client.force_login(make_member(tree["acme"], "viewer"))
    client.get(URL)  # warm the session
    with django_assert_num_queries(4):  # session, user, memberships, one page of devices
        response = client.get(URL, {"search": "SN-"})
    assert len(response.json()["results"]) == count


def test_the_detail_has_a_fixed_cost(tree, django_assert_num_queries):
    device = make_device(tree["retail"], make_version(tree["acme"]), "SN-1")
    client = APIClient()
    client.force_login(make_member(tree["acme"], "viewer"))
    client.get(URL)
    with django_assert_num_queries(4):  # session, user, memberships, the device
        response = client.get(f"{URL}{device.pk}/")
    assert response.json() == device_json(device)


def test_sorting_and_cursor_pages(tree):
    from datetime import timedelta

    from django.utils import timezone

    version = make_version(tree["acme"])
    now = timezone.now()
    made = [
        make_device(tree["retail"], version, "B", last_seen_at=now - timedelta(hours=1)),
        make_device(tree["retail"], version, "C"),
        make_device(tree["retail"], version, "A", last_seen_at=now),
    ]
    client = APIClient()
    client.force_login(make_member(tree["acme"], "viewer"))

    def serials(sort):
        found, url, params = [], URL, {"sort": sort, "page_size": 2}
        while url:
            body = client.get(url, params).json()
            found += [row["serial"] for row in body["results"]]
            url, params = body["next"], None
        return found

    assert serials("-id") == ["A", "C", "B"]
    assert serials("serial") == ["A", "B", "C"]
    assert serials("-last_seen_at") == ["A", "B", "C"]
    assert len(made) == 3
    response = client.get(URL, {"state": "broken"})
    assert (response.status_code, error(response)["fields"]) == (
        400,
        {"state": ["Unknown value(s): broken."]},
    )
