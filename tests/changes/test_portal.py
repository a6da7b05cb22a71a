"""Portal pages of change requests: list, inbox, new, detail, actions; scope and permissions."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from apps.accounts.roles import Role
from apps.changes import services
from apps.changes.models import Approval, ChangeRequest
from apps.core.actors import SYSTEM
from tests.factories import actor, make_member

pytestmark = pytest.mark.django_db


def signed_in(organization: Any, role: str) -> tuple[Client, Any]:
    user = make_member(organization, role)
    client = Client()
    client.force_login(user)
    return client, user


def pending(tree: Any, who: Any = SYSTEM) -> ChangeRequest:
    return services.change_request_create(
        actor=who,
        organization=tree["acme"],
        kind="fake",
        title="Reboot lobby screens",
        spec={"action": "reboot", "critical": True},
        target={"filter": {}},
    )


def test_the_list_shows_the_organization_requests_to_viewers_only(tree, fake, devices):
    request = pending(tree)
    url = f"/o/{tree['acme'].pk}/change-requests/"
    client, _ = signed_in(tree["acme"], Role.VIEWER)
    response = client.get(url)
    assert response.status_code == 200
    assert [row.pk for row in response.context["rows"]] == [request.pk]
    assert response.context["can_add"] is False
    assert client.get(url, {"status": "approved"}).context["rows"] == []
    billing, _ = signed_in(tree["acme"], Role.BILLING)
    assert billing.get(url).status_code == 403
    sibling, _ = signed_in(tree["globex"], Role.OWNER)
    assert sibling.get(url).status_code == 404
    assert sibling.get(f"/change-requests/{request.pk}/").status_code == 404


def test_the_inbox_lists_pending_requests_of_others_not_yet_decided(tree, fake, devices):
    approver, approver_user = signed_in(tree["acme"], Role.OWNER)
    theirs = pending(tree)
    own = pending(tree, actor(approver_user))
    decided = pending(tree)
    services.change_request_reject(
        actor=actor(approver_user), request=decided, content_hash=decided.content_hash
    )
    response = approver.get(f"/o/{tree['acme'].pk}/approvals/")
    assert [row.pk for row in response.context["rows"]] == [theirs.pk]
    assert own.pk != theirs.pk
    operator, _ = signed_in(tree["acme"], Role.OPERATOR)  # cannot approve: no inbox
    assert operator.get(f"/o/{tree['acme'].pk}/approvals/").status_code == 403


def test_the_detail_page_offers_the_decision_bound_to_the_hash(tree, fake, devices):
    request = pending(tree)
    client, _ = signed_in(tree["acme"], Role.APPROVER)
    response = client.get(f"/change-requests/{request.pk}/")
    assert response.status_code == 200
    context = response.context
    assert (context["can_decide"], context["can_execute"], context["can_cancel"]) == (
        True,
        False,
        False,
    )
    assert context["decision_form"]["content_hash"].value() == request.content_hash
    assert context["preview"].total == 4
    assert [p.summary for p in context["preview"].devices] == ["would run reboot"] * 4
    assert [e["action"] for e in context["timeline"]] == ["create"]
    body = response.content.decode()
    assert request.content_hash in body
    assert 'data-action="approve"' in body


def test_the_creator_sees_no_decision_and_a_forged_post_is_refused(tree, fake, devices):
    client, user = signed_in(tree["acme"], Role.OWNER)
    request = pending(tree, actor(user))
    response = client.get(f"/change-requests/{request.pk}/")
    assert response.context["can_decide"] is False
    assert 'id="own-request"' in response.content.decode()
    response = client.post(
        f"/change-requests/{request.pk}/approve/",
        {"content_hash": request.content_hash},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [
        "The creator of a request can never approve or reject it."
    ]
    assert Approval.objects.count() == 0


def test_approve_then_execute_from_the_page(tree, fake, devices):
    request = pending(tree)
    approver, _ = signed_in(tree["acme"], Role.APPROVER)
    response = approver.post(
        f"/change-requests/{request.pk}/approve/",
        {"content_hash": request.content_hash, "comment": "ok"},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == ["You approved this request."]
    operator, _ = signed_in(tree["acme"], Role.OPERATOR)
    assert approver.post(f"/change-requests/{request.pk}/execute/").status_code == 403
    request.refresh_from_db()
    assert request.status == "approved"  # the approver may not execute: refused, unchanged
    response = operator.post(f"/change-requests/{request.pk}/execute/", follow=True)
    assert [str(m) for m in response.context["messages"]] == ["The request was executed."]
    request.refresh_from_db()
    assert request.status == "executing"
    assert len(fake.executed) == 1


def test_an_outdated_hash_from_the_page_is_refused(tree, fake, devices):
    request = pending(tree)
    approver, _ = signed_in(tree["acme"], Role.APPROVER)
    response = approver.post(
        f"/change-requests/{request.pk}/approve/", {"content_hash": "0" * 64}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == [
        "The request changed since you saw it: review the current revision."
    ]
    request.refresh_from_db()
    assert request.status == "pending_approval"


def test_the_new_request_form(tree, fake, devices):
    client, _ = signed_in(tree["acme"], Role.OPERATOR)
    url = f"/o/{tree['acme'].pk}/change-requests/new/"
    assert client.get(url).status_code == 200
    response = client.post(
        url,
        {
            "kind": "fake",
            "title": "Ping all",
            "spec": '{"action": "ping"}',
            "target": '{"filter": {"colour": ["red"]}}',
            "resolve_at": "execution",
        },
    )
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "target": ["Invalid filter: colour: Unknown filter."]
    }
    response = client.post(
        url,
        {
            "kind": "fake",
            "title": "Ping all",
            "spec": '{"action": "ping"}',
            "target": '{"filter": {}}',
            "resolve_at": "approval",
        },
    )
    created = ChangeRequest.objects.get(title="Ping all")
    assert response.status_code == 302
    assert response["Location"] == f"/change-requests/{created.pk}/"
    assert (created.status, created.device_count, created.resolve_at) == ("approved", 4, "approval")
    viewer, _ = signed_in(tree["acme"], Role.VIEWER)
    assert viewer.get(url).status_code == 403
