"""Transfers (inbox and outbox, accept, reject, cancel) and jobs through the API."""

from __future__ import annotations

from typing import Any

import pytest

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import Job
from apps.devices import services, transfers
from apps.devices.models import Device, Transfer
from tests.authz import Call, Case, assert_authz_matrix, iso

from .registry_support import make_device, make_version

pytestmark = pytest.mark.django_db

VIEWERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.APPROVER, Role.TECHNICIAN, Role.VIEWER}
TRANSFERRERS = {Role.OWNER, Role.ADMIN}


def transfer_json(transfer: Transfer) -> dict[str, Any]:
    transfer.refresh_from_db()
    return {
        "id": str(transfer.pk),
        "device": str(transfer.device_id),
        "from_organization": str(transfer.from_organization_id),
        "to_organization": str(transfer.to_organization_id),
        "status": transfer.status,
        "note": transfer.note,
        "created_by": None,
        "decided_by": str(transfer.decided_by_id) if transfer.decided_by_id else None,
        "decided_at": iso(transfer.decided_at),
        "created_at": iso(transfer.created_at),
    }


def offered(world, to: str = "retail") -> Transfer:
    """acme offers one of its escrow devices to ``to``."""
    device = make_device(world.tree["acme"], make_version(world.tree["acme"]), "ESC-1")
    return transfers.transfer_create(actor=SYSTEM, device=device, to_organization=world.tree[to])


def received(world) -> Transfer:
    """A transfer acme (the home organization) receives: the platform offers one of the escrow
    devices it made."""
    platform = world.tree["platform"]
    device = make_device(platform, make_version(platform, slug="plat"), "PL-1")
    return transfers.transfer_create(actor=SYSTEM, device=device, to_organization=world.home)


def state(attempt) -> list[Any]:
    rows = list(Transfer.objects.order_by("id").values_list("id", "status"))
    return rows + list(Device.objects.order_by("id").values_list("id", "organization_id"))


def test_list_matrix_shows_outgoing_transfers(authz_world):
    assert_authz_matrix(
        authz_world,
        Case(
            permission="device.view",
            allowed=VIEWERS,
            setup=offered,
            request=lambda a: Call("get", "/api/v1/transfers/", {"direction": "outgoing"}),
            expect=lambda a, r: _equal(r.json()["results"], [transfer_json(a.target)]),
            listing=True,
        ),
    )


def test_list_matrix_shows_incoming_transfers(authz_world):
    assert_authz_matrix(
        authz_world,
        Case(
            permission="device.view",
            allowed=VIEWERS,
            setup=received,
            request=lambda a: Call("get", "/api/v1/transfers/", {"direction": "incoming"}),
            expect=lambda a, r: _equal(r.json()["results"], [transfer_json(a.target)]),
            listing=True,
        ),
    )


def _equal(left: Any, right: Any) -> None:
    assert left == right


def test_retrieve_matrix(authz_world):
    assert_authz_matrix(
        authz_world,
        Case(
            permission="device.view",
            allowed=VIEWERS,
            setup=offered,
            request=lambda a: Call("get", f"/api/v1/transfers/{a.target.pk}/"),
            expect=lambda a, r: _equal(r.json(), transfer_json(a.target)),
        ),
    )


@pytest.mark.parametrize(
    ("verb", "setup", "status", "owner"),
    [
        ("accept", received, "accepted", "acme"),
        ("reject", received, "rejected", "platform"),
        ("cancel", offered, "cancelled", "acme"),
    ],
)
def test_decision_matrix(authz_world, verb, setup, status, owner):
    def expect(attempt, response):
        transfer = attempt.target
        assert response.json() == transfer_json(transfer)
        assert transfer.status == status
        device = Device.objects.get(pk=transfer.device_id)
        assert device.organization_id == attempt.world.tree[owner].pk

    assert_authz_matrix(
        authz_world,
        Case(
            permission="device.transfer",
            allowed=TRANSFERRERS,
            setup=setup,
            request=lambda a: Call("post", f"/api/v1/transfers/{a.target.pk}/{verb}/"),
            state=state,
            expect=expect,
        ),
    )


def test_the_receiver_cannot_cancel_and_the_sender_cannot_accept(tree):
    from rest_framework.test import APIClient

    from tests.factories import make_member

    device = make_device(tree["acme"], make_version(tree["acme"]), "ESC-1")
    transfer = transfers.transfer_create(
        actor=SYSTEM, device=device, to_organization=tree["retail"]
    )
    receiver, sender = APIClient(), APIClient()
    receiver.force_login(make_member(tree["retail"], "owner"))
    sender.force_login(make_member(tree["hospital"], "owner"))
    assert receiver.post(f"/api/v1/transfers/{transfer.pk}/cancel/").status_code == 403
    assert sender.post(f"/api/v1/transfers/{transfer.pk}/accept/").status_code == 404
    assert Transfer.objects.get().status == "pending"


# --- jobs --------------------------------------------------------------------------------------


def finished_job(world) -> Job:
    version = make_version(world.tree["acme"])
    moved = make_device(world.tree["retail"], version, "A", state="active")
    refused = make_device(world.tree["retail"], version, "B", state="escrow")
    job = services.device_bulk_transition(
        actor=SYSTEM, organization=world.home, selection={}, transition="suspend"
    )
    services.bulk_transition_run(job_id=job.pk)
    job.refresh_from_db()
    job.devices = (moved, refused)  # type: ignore[attr-defined]
    return job


def test_job_retrieve_matrix(authz_world):
    def expect(attempt, response):
        job = attempt.target
        assert response.json() == {
            "id": str(job.pk),
            "organization": str(attempt.world.home.pk),
            "kind": "devices.bulk_transition",
            "status": "partial",
            "total": 2,
            "processed": 2,
            "succeeded": 1,
            "failed": 1,
            "percent": 100,
            "params": job.params,
            "result": job.result,
            "error": "",
            "actor_label": "system",
            "created_at": iso(job.created_at),
            "started_at": iso(job.started_at),
            "finished_at": iso(job.finished_at),
        }

    assert_authz_matrix(
        authz_world,
        Case(
            permission="job.view",
            allowed=VIEWERS,
            setup=finished_job,
            request=lambda a: Call("get", f"/api/v1/jobs/{a.target.pk}/"),
            expect=expect,
        ),
    )


def test_job_items_matrix_filters_failures(authz_world):
    def expect(attempt, response):
        refused = attempt.target.devices[1]
        rows = response.json()["results"]
        assert [(r["key"], r["ok"], r["message"]) for r in rows] == [
            (str(refused.pk), False, "Cannot suspend a device that is escrow.")
        ]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="job.view",
            allowed=VIEWERS,
            setup=finished_job,
            request=lambda a: Call("get", f"/api/v1/jobs/{a.target.pk}/items/", {"ok": "false"}),
            expect=expect,
        ),
    )


def test_job_list_matrix(authz_world):
    assert_authz_matrix(
        authz_world,
        Case(
            permission="job.view",
            allowed=VIEWERS,
            setup=finished_job,
            request=lambda a: Call("get", "/api/v1/jobs/"),
            expect=lambda a, r: _equal(
                [row["id"] for row in r.json()["results"]], [str(a.target.pk)]
            ),
            listing=True,
        ),
    )
