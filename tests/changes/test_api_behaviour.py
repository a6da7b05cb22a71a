"""API behaviour beyond the matrix: the 409 envelope, validation errors, query budgets."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from apps.accounts.roles import Role
from apps.changes import services
from apps.changes.kinds import names
from apps.changes.models import ChangeRequest
from apps.core.actors import SYSTEM
from tests.authz import error
from tests.factories import make_member

pytestmark = pytest.mark.django_db

URL = "/api/v1/change-requests/"


def client_for(organization: Any, role: str) -> APIClient:
    client = APIClient()
    client.force_login(make_member(organization, role))
    return client


def make(tree: Any, critical: bool = True, title: str = "Reboot") -> ChangeRequest:
    return services.change_request_create(
        actor=SYSTEM,
        organization=tree["acme"],
        kind="fake",
        title=title,
        spec={"action": "reboot", "critical": critical},
        target={"filter": {}},
    )


def test_executing_a_pending_request_is_a_409_envelope_and_changes_nothing(tree, fake, devices):
    request = make(tree)
    response = client_for(tree["acme"], Role.OPERATOR).post(f"{URL}{request.pk}/execute/")
    assert response.status_code == 409
    body = error(response)
    assert (body["status"], body["code"], body["message"]) == (
        409,
        "not_approved",
        "Only an approved request can be executed; this one is pending approval.",
    )
    request.refresh_from_db()
    assert (request.status, fake.executed) == ("pending_approval", [])


def test_approving_an_edited_request_with_the_old_hash_is_refused(tree, fake, devices):
    request = make(tree)
    old = request.content_hash
    operator = client_for(tree["acme"], Role.OPERATOR)
    response = operator.patch(
        f"{URL}{request.pk}/",
        {"run_at": "2030-01-01T00:00:00Z", "expires_at": "2030-02-01T00:00:00Z"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["revision"] == 2
    approver = client_for(tree["acme"], Role.APPROVER)
    response = approver.post(f"{URL}{request.pk}/approve/", {"content_hash": old}, format="json")
    assert response.status_code == 409
    assert error(response)["code"] == "outdated"
    current = ChangeRequest.objects.get(pk=request.pk).content_hash
    response = approver.post(
        f"{URL}{request.pk}/approve/", {"content_hash": current}, format="json"
    )
    assert response.json()["status"] == "approved"


def test_bad_input_is_a_field_level_400(tree, fake, devices):
    operator = client_for(tree["acme"], Role.OPERATOR)
    response = operator.post(
        URL,
        {
            "organization": str(tree["acme"].pk),
            "kind": "nothing",
            "title": "x",
            "spec": {},
            "target": {"filter": {}},
        },
        format="json",
    )
    assert response.status_code == 400
    known = ", ".join(names())  # fake, and the real kinds of the installed apps
    assert error(response)["fields"] == {"kind": [f"Unknown kind. One of: {known}."]}
    response = operator.post(
        URL,
        {
            "organization": str(tree["acme"].pk),
            "kind": "fake",
            "title": "x",
            "spec": {"nope": 1},
            "target": {"device": str(devices[4].pk)},
        },
        format="json",
    )
    assert response.status_code == 400
    assert error(response)["fields"] == {"spec": ["action: a string is required."]}
    response = operator.post(
        URL,
        {
            "organization": str(tree["acme"].pk),
            "kind": "fake",
            "title": "x",
            "spec": {"action": "a"},
            "target": {"device": str(devices[4].pk)},  # globex's device
        },
        format="json",
    )
    assert response.status_code == 400
    assert error(response)["fields"] == {"target": ["Unknown device."]}
    assert ChangeRequest.objects.count() == 0


def test_the_list_costs_the_same_for_one_or_many_requests(tree, fake, devices):
    viewer = client_for(tree["acme"], Role.VIEWER)
    make(tree)
    viewer.get(URL)  # warm the session and caches
    with CaptureQueriesContext(connection) as one:
        assert len(viewer.get(URL).json()["results"]) == 1
    for n in range(5):
        make(tree, title=f"r{n}")
    with CaptureQueriesContext(connection) as six:
        response = viewer.get(URL, {"kind": "fake"})
    assert len(response.json()["results"]) == 6
    assert len(six) == len(one)
