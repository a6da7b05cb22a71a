"""The change-request back office: read-mostly requests, cancel through the service, approvals
read-only, policies written through their services."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.models import User
from apps.changes import services
from apps.changes.models import ApprovalPolicy, ChangeRequest
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog

pytestmark = pytest.mark.django_db


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root@fleetops.example", "pw-12345678"))
    return client


def make_request(tree, title: str) -> ChangeRequest:
    return services.change_request_create(
        actor=SYSTEM,
        organization=tree["acme"],
        kind="fake",
        title=title,
        spec={"action": "reboot", "critical": True},
        target={"filter": {}},
    )


def test_requests_are_listed_and_cancelled_through_the_service(tree, fake, devices, root):
    first, second = make_request(tree, "One"), make_request(tree, "Two")
    response = root.get("/admin/changes/changerequest/", {"q": "One"})
    assert [r.title for r in response.context["cl"].result_list] == ["One"]
    assert response.context["cl"].show_full_result_count is False
    assert root.get(f"/admin/changes/changerequest/{first.pk}/change/").status_code == 200
    response = root.post(
        "/admin/changes/changerequest/",
        {"action": "cancel", "_selected_action": [str(first.pk)]},
        follow=True,
    )
    assert [str(m) for m in response.context["messages"]] == [
        "Cancelled: 1; unchanged: 0; not permitted: 0."
    ]
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("cancelled", "pending_approval")
    row = AuditLog.objects.get(action="changerequest.cancel")
    assert (row.source, row.actor_label) == ("admin", "root@fleetops.example")


def test_policies_are_written_through_their_service(tree, root):
    response = root.post(
        "/admin/changes/approvalpolicy/add/",
        {
            "organization": str(tree["acme"].pk),
            "name": "Acme",
            "command_threshold": "normal",
            "configuration_critical_keys": "[]",
            "approvals_required": 2,
        },
    )
    assert response.status_code == 302
    policy = ApprovalPolicy.objects.get()
    assert (policy.name, policy.command_threshold, policy.approvals_required) == (
        "Acme",
        "normal",
        2,
    )
    assert AuditLog.objects.get(action="approvalpolicy.create").object_id == str(policy.pk)
