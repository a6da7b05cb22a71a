"""The maker-checker rules as tables: who may create, approve and execute, for which policies;
approvals voided by edits; executing unapproved, expired or rejected requests refused with
nothing executed; API-key creators."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts import tokens
from apps.accounts.models import APIKey, Organization
from apps.accounts.roles import Role
from apps.changes import execution, services
from apps.changes.models import Approval, ApprovalPolicy, ChangeRequest
from apps.core.models import Event
from tests.authz import error
from tests.factories import actor, make_member

from .support import FakeKind

pytestmark = pytest.mark.django_db

URL = "/api/v1/change-requests/"


def create(who: Any, organization: Organization, **overrides: Any) -> ChangeRequest:
    fields: dict[str, Any] = {
        "kind": "fake",
        "title": "Reboot",
        "spec": {"action": "reboot", "critical": True},
        "target": {"filter": {}},
    }
    fields.update(overrides)
    return services.change_request_create(actor=who, organization=organization, **fields)


def approve(who: Any, request: ChangeRequest) -> None:
    request.refresh_from_db()
    services.change_request_approve(actor=who, request=request, content_hash=request.content_hash)


@pytest.mark.parametrize(
    ("role", "may_create", "may_approve", "may_execute"),
    [
        (Role.OWNER, True, True, True),
        (Role.ADMIN, True, True, True),
        (Role.OPERATOR, True, False, True),
        (Role.APPROVER, False, True, False),
        (Role.TECHNICIAN, True, False, False),
        (Role.VIEWER, False, False, False),
    ],
)
def test_who_may_create_approve_and_execute(
    tree, fake, devices, role, may_create, may_approve, may_execute
):
    acme = tree["acme"]
    who = actor(make_member(acme, role))
    maker = actor(make_member(acme, Role.OPERATOR))
    try:
        create(who, acme)
        created = True
    except PermissionDenied:
        created = False
    assert created is may_create

    request = create(maker, acme)
    try:
        approve(who, request)
        approved = True
    except PermissionDenied:
        approved = False
    assert approved is may_approve

    request = create(maker, acme, spec={"action": "ping"})  # needs no approval
    assert request.status == "approved"
    try:
        execution.change_request_execute(actor=who, request=request)
        executed = True
    except PermissionDenied:
        executed = False
    assert executed is may_execute
    assert len(fake.executed) == int(may_execute)


def test_it_refuses_a_request_approved_by_its_creator(tree, fake, devices):
    owner = actor(make_member(tree["acme"], Role.OWNER))  # holds approve, yet created it
    request = create(owner, tree["acme"])
    with pytest.raises(services.Refused) as refused:
        approve(owner, request)
    assert refused.value.code == "own_request"
    request.refresh_from_db()
    assert (request.status, Approval.objects.count()) == ("pending_approval", 0)


def test_an_api_key_counts_as_its_creator(tree, fake, devices):
    acme = tree["acme"]
    owner = make_member(acme, Role.OWNER)
    issued = tokens.issue("api")
    key = APIKey.objects.create(
        organization=acme,
        name="ci",
        role=Role.OWNER,
        prefix=issued.prefix,
        token_hash=issued.token_hash,
        created_by=owner,
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.token}")
    response = client.post(
        URL,
        {
            "organization": str(acme.pk),
            "kind": "fake",
            "title": "Reboot",
            "spec": {"action": "reboot", "critical": True},
            "target": {"filter": {}},
        },
        format="json",
    )
    assert response.status_code == 201
    request = ChangeRequest.objects.get(pk=response.json()["id"])
    assert (request.created_by, request.created_by_api_key_id) == (owner, key.pk)
    # neither the key itself nor the person who made it may approve it
    for who in (client, _session(owner)):
        response = who.post(
            f"{URL}{request.pk}/approve/", {"content_hash": request.content_hash}, format="json"
        )
        assert response.status_code == 409
        assert error(response)["code"] == "own_request"
        assert error(response)["message"] == (
            "The creator of a request can never approve or reject it."
        )
    assert Approval.objects.count() == 0


def _session(user: Any) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def test_a_second_approver_is_needed_when_the_policy_asks_for_two(tree, fake, devices):
    acme = tree["acme"]
    ApprovalPolicy.objects.create(organization=acme, name="Two eyes", approvals_required=2)
    maker = actor(make_member(acme, Role.OPERATOR))
    first, second = (actor(make_member(acme, Role.APPROVER)) for _ in range(2))
    request = create(maker, acme)
    assert (request.required_approvals, request.policy_reason) == (
        2,
        "critical command (policy Two eyes)",
    )
    approve(first, request)
    request.refresh_from_db()
    assert request.status == "pending_approval"
    with pytest.raises(services.Refused) as refused:
        approve(first, request)  # the same person twice is one approval
    assert refused.value.code == "already_decided"
    with pytest.raises(services.Refused) as refused:
        execution.change_request_execute(actor=maker, request=request)
    assert refused.value.code == "not_approved"
    assert fake.executed == []
    approve(second, request)
    request.refresh_from_db()
    assert request.status == "approved"
    assert (
        Event.objects.filter(type="changerequest.approved", subject_id=str(request.pk)).count() == 1
    )


def test_an_edit_voids_the_approvals(tree, fake, devices):
    acme = tree["acme"]
    maker = actor(make_member(acme, Role.OPERATOR))
    checker = actor(make_member(acme, Role.APPROVER))
    request = create(maker, acme)
    old_hash = request.content_hash
    approve(checker, request)
    request.refresh_from_db()
    assert request.status == "approved"

    request = services.change_request_update(
        actor=maker, request=request, spec={"action": "reboot --force", "critical": True}
    )
    assert (request.status, request.revision) == ("pending_approval", 2)
    assert request.content_hash != old_hash
    with pytest.raises(services.Refused) as refused:
        execution.change_request_execute(actor=maker, request=request)
    assert refused.value.code == "not_approved"
    # an approval of the hash the approver saw before the edit is refused
    other = actor(make_member(acme, Role.APPROVER))
    with pytest.raises(services.Refused) as refused:
        services.change_request_approve(actor=other, request=request, content_hash=old_hash)
    assert refused.value.code == "outdated"
    approve(checker, request)  # the same approver may approve the new revision
    request.refresh_from_db()
    assert request.status == "approved"
    assert list(Approval.objects.order_by("created_at").values_list("revision", flat=True)) == [
        1,
        2,
    ]
    execution.change_request_execute(actor=maker, request=request)
    assert len(fake.executed) == 1


def test_a_title_only_edit_keeps_the_approval(tree, fake, devices):
    acme = tree["acme"]
    maker = actor(make_member(acme, Role.OPERATOR))
    request = create(maker, acme)
    approve(actor(make_member(acme, Role.APPROVER)), request)
    request = services.change_request_update(actor=maker, request=request, title="Reboot lobby")
    assert (request.status, request.revision, request.title) == ("approved", 1, "Reboot lobby")


@pytest.mark.parametrize("state", ["pending_approval", "rejected", "expired", "cancelled"])
def test_executing_a_request_not_approved_is_refused_and_nothing_runs(tree, fake, devices, state):
    acme = tree["acme"]
    maker = actor(make_member(acme, Role.OPERATOR))
    checker = actor(make_member(acme, Role.APPROVER))
    request = create(maker, acme)
    if state == "rejected":
        services.change_request_reject(
            actor=checker, request=request, content_hash=request.content_hash
        )
    elif state == "expired":
        approve(checker, request)
        ChangeRequest.objects.filter(pk=request.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        assert execution.expire_due() == 1
    elif state == "cancelled":
        execution.change_request_cancel(actor=maker, request=request)
    request.refresh_from_db()
    assert request.status == state
    client = _session(maker_user := make_member(acme, Role.OPERATOR))
    assert maker_user is not None
    events_before = Event.objects.count()
    response = client.post(f"{URL}{request.pk}/execute/")
    assert response.status_code == 409
    assert error(response)["code"] == "not_approved"
    assert error(response)["message"] == (
        f"Only an approved request can be executed; this one is {state.replace('_', ' ')}."
    )
    assert fake.executed == []
    assert Event.objects.count() == events_before


def test_an_approved_request_past_its_expiry_is_refused(tree, fake, devices):
    acme = tree["acme"]
    maker = actor(make_member(acme, Role.OPERATOR))
    request = create(maker, acme, spec={"action": "ping"})
    later = request.expires_at + timedelta(seconds=1)
    with pytest.raises(services.Refused) as refused:
        execution.change_request_execute(actor=maker, request=request, now=later)
    assert refused.value.code == "expired"
    assert fake.executed == []


def test_a_tampered_request_is_refused_by_the_hash(tree, fake, devices):
    acme = tree["acme"]
    maker = actor(make_member(acme, Role.OPERATOR))
    request = create(maker, acme)
    approve(actor(make_member(acme, Role.APPROVER)), request)
    # a write around the services (a bug, a console) changes what would run
    ChangeRequest.objects.filter(pk=request.pk).update(spec={"action": "rm -rf", "critical": True})
    request.refresh_from_db()
    with pytest.raises(services.Refused) as refused:
        execution.change_request_execute(actor=maker, request=request)
    assert refused.value.code == "hash_mismatch"
    assert fake.executed == []


def test_one_rejection_rejects_and_an_edit_submits_again(tree, fake, devices):
    acme = tree["acme"]
    ApprovalPolicy.objects.create(organization=acme, name="Two eyes", approvals_required=2)
    maker = actor(make_member(acme, Role.OPERATOR))
    first, second = (actor(make_member(acme, Role.APPROVER)) for _ in range(2))
    request = create(maker, acme)
    approve(first, request)
    request.refresh_from_db()
    services.change_request_reject(
        actor=second, request=request, content_hash=request.content_hash, comment="Not on Friday"
    )
    request.refresh_from_db()
    assert request.status == "rejected"
    with pytest.raises(services.Refused):
        approve(actor(make_member(acme, Role.APPROVER)), request)
    request = services.change_request_update(
        actor=maker, request=request, spec={"action": "reboot", "critical": True, "keys": ["x"]}
    )
    assert (request.status, request.revision) == ("pending_approval", 2)


def test_cancelling_an_executing_request_cancels_through_its_kind(tree, fake: FakeKind, devices):
    acme = tree["acme"]
    maker = actor(make_member(acme, Role.OPERATOR))
    request = create(maker, acme, spec={"action": "ping"})
    execution.change_request_execute(actor=maker, request=request)
    execution.change_request_cancel(actor=maker, request=request)
    request.refresh_from_db()
    assert (request.status, fake.cancelled) == ("cancelled", [request.pk])
    event = Event.objects.get(type="changerequest.cancelled", subject_id=str(request.pk))
    assert event.payload["devices_cancelled"] == "2"


def test_completion_is_reported_once(tree, fake, devices):
    acme = tree["acme"]
    maker = actor(make_member(acme, Role.OPERATOR))
    request = create(maker, acme, spec={"action": "ping"})
    execution.change_request_execute(actor=maker, request=request)
    assert execution.change_request_completed(request.pk) is True
    assert execution.change_request_completed(request.pk) is False
    request.refresh_from_db()
    assert request.status == "completed"
    event = Event.objects.get(type="changerequest.completed", subject_id=str(request.pk))
    assert event.payload["progress"] == {"total": 4, "succeeded": 4}


def test_every_step_is_audited_and_raises_events(tree, fake, devices):
    acme = tree["acme"]
    maker = actor(make_member(acme, Role.OPERATOR))
    request = create(maker, acme)
    approve(actor(make_member(acme, Role.APPROVER)), request)
    request.refresh_from_db()
    execution.change_request_execute(actor=maker, request=request)
    execution.change_request_completed(request.pk)
    from apps.core.models import AuditLog

    actions = list(
        AuditLog.objects.filter(object_id=str(request.pk))
        .order_by("created_at", "id")
        .values_list("action", flat=True)
    )
    assert actions == [
        "changerequest.create",
        "changerequest.approve",
        "changerequest.execute",
        "changerequest.complete",
    ]
    types = list(
        Event.objects.filter(subject_id=str(request.pk))
        .order_by("created_at", "id")
        .values_list("type", flat=True)
    )
    assert types == [
        "changerequest.created",
        "changerequest.approved",
        "changerequest.executed",
        "changerequest.completed",
    ]


def test_a_key_may_not_approve_what_its_creator_created(tree, fake, devices):
    acme = tree["acme"]
    owner = make_member(acme, Role.OWNER)
    request = create(actor(owner), acme)
    issued = tokens.issue("api")
    APIKey.objects.create(
        organization=acme,
        name="approver bot",
        role=Role.APPROVER,
        prefix=issued.prefix,
        token_hash=issued.token_hash,
        created_by=owner,
    )
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.token}")
    response = client.post(
        f"{URL}{request.pk}/approve/", {"content_hash": request.content_hash}, format="json"
    )
    assert response.status_code == 409
    assert error(response)["code"] == "own_request"
    other = make_member(acme, Role.OPERATOR)
    theirs = create(actor(other), acme)
    response = client.post(
        f"{URL}{theirs.pk}/approve/", {"content_hash": theirs.content_hash}, format="json"
    )
    assert response.json()["status"] == "approved"
    approval = Approval.objects.get(request=theirs)
    assert (approval.approver, approval.approver_label) == (
        owner,
        f"API key approver bot ({issued.prefix})",
    )


def test_the_periodic_tasks_run_the_services(tree, fake, devices):
    """The entry points run the services; a scheduled request whose run_at was changed
    around the services no longer matches its hash and is cancelled, nothing sent."""
    from apps.changes.tasks import expire_task, run_due_task

    acme = tree["acme"]
    maker = actor(make_member(acme, Role.OPERATOR))
    due = create(maker, acme, spec={"action": "ping"}, run_at=timezone.now() + timedelta(hours=1))
    execution.change_request_execute(actor=maker, request=due)
    ChangeRequest.objects.filter(pk=due.pk).update(run_at=timezone.now() - timedelta(seconds=1))
    stale = create(maker, acme)
    ChangeRequest.objects.filter(pk=stale.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert (run_due_task(), expire_task()) == (0, 1)
    assert dict(ChangeRequest.objects.values_list("pk", "status")) == {
        due.pk: "cancelled",
        stale.pk: "expired",
    }
    from apps.core.models import AuditLog

    assert AuditLog.objects.get(action="changerequest.fail").changes == {
        "reason": "What would run differs from what was submitted."
    }
    assert fake.executed == []
