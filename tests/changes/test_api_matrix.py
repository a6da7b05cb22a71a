"""/api/v1/change-requests/ and /api/v1/approval-policies/: the authorization matrix on
every endpoint (anonymous 401, sibling 404, role without permission 403, allowed -> exact
state)."""

from __future__ import annotations

from typing import Any

import pytest

from apps.accounts.roles import Role
from apps.changes import services
from apps.changes.models import Approval, ApprovalPolicy, ChangeRequest
from apps.core.actors import SYSTEM
from tests.authz import Call, Case, assert_authz_matrix, error, ids, last_audit

from .support import make_device, make_version

pytestmark = pytest.mark.django_db

URL = "/api/v1/change-requests/"
POLICIES = "/api/v1/approval-policies/"
VIEWERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.APPROVER, Role.TECHNICIAN, Role.VIEWER}
MAKERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.TECHNICIAN}
EDITORS = {Role.OWNER, Role.ADMIN, Role.OPERATOR}
APPROVERS = {Role.OWNER, Role.ADMIN, Role.APPROVER}


def pending(world: Any, critical: bool = True) -> ChangeRequest:
    """A request of acme's retail created by the system: pending approval when critical."""
    version = make_version(world.tree["acme"])
    device = make_device(version, world.tree["retail"])
    return services.change_request_create(
        actor=SYSTEM,
        organization=world.tree["retail"],
        kind="fake",
        title="Reboot",
        spec={"action": "reboot", "critical": critical},
        target={"device": str(device.pk)},
    )


def approved(world: Any) -> ChangeRequest:
    return pending(world, critical=False)


def status_of(attempt: Any) -> tuple[str, int]:
    request = ChangeRequest.objects.get(pk=attempt.target.pk)
    return request.status, request.revision


def test_list_matrix(authz_world, fake):
    def expect(attempt: Any, response: Any) -> None:
        assert ids(response) == [str(attempt.target.pk)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="changerequest.view",
            allowed=VIEWERS,
            setup=pending,
            request=lambda a: Call("get", URL, {"status": "pending_approval"}),
            expect=expect,
            listing=True,
        ),
    )


def test_retrieve_matrix(authz_world, fake):
    def expect(attempt: Any, response: Any) -> None:
        body = response.json()
        assert body["id"] == str(attempt.target.pk)
        assert body["status"] == "pending_approval"
        assert body["required_approvals"] == 1
        assert body["policy_reason"] == "critical command (policy Default)"
        assert body["content_hash"] == attempt.target.content_hash

    assert_authz_matrix(
        authz_world,
        Case(
            permission="changerequest.view",
            allowed=VIEWERS,
            setup=pending,
            request=lambda a: Call("get", f"{URL}{a.target.pk}/"),
            expect=expect,
        ),
    )


def test_create_matrix(authz_world, fake):
    def setup(world: Any) -> Any:
        return make_device(make_version(world.tree["acme"]), world.tree["retail"])

    def expect(attempt: Any, response: Any) -> None:
        created = ChangeRequest.objects.get(pk=response.json()["id"])
        assert created.status == "approved"  # a normal command needs no approval by default
        assert created.target == {"device": str(attempt.target.pk)}
        assert created.created_by_label == attempt.principal.label
        assert last_audit("changerequest.create").object_id == str(created.pk)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="changerequest.add",
            allowed=MAKERS,
            setup=setup,
            request=lambda a: Call(
                "post",
                URL,
                {
                    "organization": str(a.world.tree["retail"].pk),
                    "kind": "fake",
                    "title": "Ping",
                    "spec": {"action": "ping"},
                    "target": {"device": str(a.target.pk)},
                },
            ),
            status=201,
            state=lambda a: ChangeRequest.objects.count(),
            expect=expect,
        ),
    )


def test_update_matrix(authz_world, fake):
    def expect(attempt: Any, response: Any) -> None:
        body = response.json()
        assert body["revision"] == 2
        assert body["spec"] == {"action": "reboot-now", "critical": True, "keys": []}
        assert body["status"] == "pending_approval"

    assert_authz_matrix(
        authz_world,
        Case(
            permission="changerequest.change",
            allowed=EDITORS,
            setup=pending,
            request=lambda a: Call(
                "patch",
                f"{URL}{a.target.pk}/",
                {"spec": {"action": "reboot-now", "critical": True}},
            ),
            state=status_of,
            expect=expect,
        ),
    )


def test_preview_matrix(authz_world, fake):
    def expect(attempt: Any, response: Any) -> None:
        device_id = attempt.target.target["device"]
        assert response.json() == {
            "total": 1,
            "excluded": 0,
            "next_after": None,
            "devices": [
                {
                    "device_id": device_id,
                    "serial": response.json()["devices"][0]["serial"],
                    "summary": "would run reboot",
                    "diff": [{"op": "replace", "path": "/action", "from": None, "to": "reboot"}],
                }
            ],
        }

    assert_authz_matrix(
        authz_world,
        Case(
            permission="changerequest.view",
            allowed=VIEWERS,
            setup=pending,
            request=lambda a: Call("get", f"{URL}{a.target.pk}/preview/"),
            expect=expect,
        ),
    )


def test_approvals_list_matrix(authz_world, fake):
    def setup(world: Any) -> ChangeRequest:
        request = pending(world)
        approver = world.principal(Role.APPROVER)
        services.change_request_reject(
            actor=_actor(approver), request=request, content_hash=request.content_hash
        )
        return request

    def expect(attempt: Any, response: Any) -> None:
        rows = response.json()
        assert [(r["decision"], r["revision"], r["valid"]) for r in rows] == [("reject", 1, True)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="changerequest.view",
            allowed=VIEWERS,
            setup=setup,
            request=lambda a: Call("get", f"{URL}{a.target.pk}/approvals/"),
            expect=expect,
        ),
    )


def _actor(principal: Any) -> Any:
    from apps.accounts.actors import actor_for_api_key, actor_for_user

    if principal.user is not None:
        return actor_for_user(principal.user)
    return actor_for_api_key(principal.api_key)


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_decision_matrix(authz_world, fake, verb):
    expected = "approved" if verb == "approve" else "rejected"

    def expect(attempt: Any, response: Any) -> None:
        assert response.json()["status"] == expected
        approval = Approval.objects.get(request=attempt.target)
        assert approval.decision == verb
        assert approval.approver_label == attempt.principal.label
        assert approval.content_hash == attempt.target.content_hash
        assert last_audit(f"changerequest.{verb}").object_id == str(attempt.target.pk)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="changerequest.approve",
            allowed=APPROVERS,
            setup=pending,
            request=lambda a: Call(
                "post", f"{URL}{a.target.pk}/{verb}/", {"content_hash": a.target.content_hash}
            ),
            state=lambda a: (status_of(a), Approval.objects.count()),
            expect=expect,
        ),
    )


def test_execute_matrix(authz_world, fake):
    def expect(attempt: Any, response: Any) -> None:
        assert response.json()["status"] == "executing"
        request_id, device_ids, _ = fake.executed[-1]
        assert (request_id, [str(pk) for pk in device_ids]) == (
            attempt.target.pk,
            [attempt.target.target["device"]],
        )

    assert_authz_matrix(
        authz_world,
        Case(
            permission="changerequest.execute",
            allowed=EDITORS,
            setup=approved,
            request=lambda a: Call("post", f"{URL}{a.target.pk}/execute/"),
            state=lambda a: (status_of(a), len(fake.executed)),
            expect=expect,
        ),
    )


def test_cancel_matrix(authz_world, fake):
    def expect(attempt: Any, response: Any) -> None:
        assert response.json()["status"] == "cancelled"
        assert response.json()["cancelled_at"] is not None

    assert_authz_matrix(
        authz_world,
        Case(
            permission="changerequest.change",
            allowed=EDITORS,
            setup=pending,
            request=lambda a: Call("post", f"{URL}{a.target.pk}/cancel/"),
            state=status_of,
            expect=expect,
        ),
    )


# --- approval policies -------------------------------------------------------------------------


def make_policy(world: Any) -> ApprovalPolicy:
    return ApprovalPolicy.objects.create(
        organization=world.tree["retail"], name="Retail", approvals_required=2
    )


def policies_state(attempt: Any) -> list[tuple[Any, ...]]:
    return list(
        ApprovalPolicy.objects.order_by("id").values_list("id", "name", "approvals_required")
    )


def test_policy_list_matrix(authz_world):
    def expect(attempt: Any, response: Any) -> None:
        assert ids(response) == [str(attempt.target.pk)]
        assert response.json()["results"][0]["approvals_required"] == 2

    assert_authz_matrix(
        authz_world,
        Case(
            permission="changerequest.view",
            allowed=VIEWERS,
            setup=make_policy,
            request=lambda a: Call("get", POLICIES),
            expect=expect,
            listing=True,
        ),
    )


def test_policy_create_matrix(authz_world):
    def expect(attempt: Any, response: Any) -> None:
        policy = ApprovalPolicy.objects.get(pk=response.json()["id"])
        assert (policy.organization, policy.name, policy.device_threshold) == (
            attempt.world.tree["retail"],
            "Big fleets",
            100,
        )
        assert policy.configuration_critical_keys == ["network.apn", "security"]
        assert last_audit("approvalpolicy.create").object_id == str(policy.pk)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="changerequest.change",
            allowed=EDITORS,
            request=lambda a: Call(
                "post",
                POLICIES,
                {
                    "organization": str(a.world.tree["retail"].pk),
                    "name": "Big fleets",
                    "device_threshold": 100,
                    "configuration_critical_keys": ["security", "network.apn"],
                },
            ),
            status=201,
            state=policies_state,
            expect=expect,
        ),
    )


def test_policy_update_matrix(authz_world):
    def expect(attempt: Any, response: Any) -> None:
        attempt.target.refresh_from_db()
        assert attempt.target.approvals_required == 3

    assert_authz_matrix(
        authz_world,
        Case(
            permission="changerequest.change",
            allowed=EDITORS,
            setup=make_policy,
            request=lambda a: Call("patch", f"{POLICIES}{a.target.pk}/", {"approvals_required": 3}),
            state=policies_state,
            expect=expect,
        ),
    )


def test_policy_delete_matrix(authz_world):
    def expect(attempt: Any, response: Any) -> None:
        assert not ApprovalPolicy.objects.filter(pk=attempt.target.pk).exists()

    assert_authz_matrix(
        authz_world,
        Case(
            permission="changerequest.change",
            allowed=EDITORS,
            setup=make_policy,
            request=lambda a: Call("delete", f"{POLICIES}{a.target.pk}/"),
            status=204,
            state=policies_state,
            expect=expect,
        ),
    )


def test_a_policy_for_a_second_profile_slot_is_refused(authz_world):
    world = authz_world
    make_policy(world)
    owner = world.members[Role.OWNER]
    response = owner.client.post(
        POLICIES,
        {"organization": str(world.tree["retail"].pk), "name": "Again"},
        format="json",
    )
    assert response.status_code == 400
    assert error(response)["fields"] == {
        "profile": ["This organization already has a policy for this profile."]
    }
