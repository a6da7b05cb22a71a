from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.roles import Role
from apps.core import audit
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog
from apps.core.selectors import AUDIT_CSV_COLUMNS
from tests.authz import Call, Case, assert_authz_matrix, error, ids, iso
from tests.factories import make_member

pytestmark = pytest.mark.django_db

URL = "/api/v1/audit-log/"
AUDITORS = {Role.OWNER, Role.ADMIN, Role.APPROVER}
EXPORTERS = {Role.OWNER, Role.ADMIN}


def audit_json(row: AuditLog) -> dict[str, Any]:
    return {
        "id": str(row.pk),
        "created_at": iso(row.created_at),
        "organization": str(row.organization_id) if row.organization_id else None,
        "actor_kind": row.actor_kind,
        "actor_user": str(row.actor_user_id) if row.actor_user_id else None,
        "actor_api_key": str(row.actor_api_key_id) if row.actor_api_key_id else None,
        "actor_device": None,
        "actor_label": row.actor_label,
        "source": row.source,
        "action": row.action,
        "object_type": row.object_type,
        "object_id": row.object_id,
        "object_repr": row.object_repr,
        "changes": row.changes,
        "request_id": row.request_id,
    }


def retail_row(world) -> AuditLog:
    return audit.record(
        actor=SYSTEM,
        action="widget.update",
        organization_id=world.tree["retail"].pk,
        object_type="testapp.widget",
        object_id="w-1",
        object_repr="=HYPERLINK(evil)",
        changes={"name": ["a", "b"]},
    )


def csv_rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def session_client(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


# --- the matrix --------------------------------------------------------------------------------


def test_list_matrix(authz_world):
    def expect(attempt, response):
        assert response.json()["results"] == [audit_json(attempt.target)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="auditlog.view",
            allowed=AUDITORS,
            setup=retail_row,
            request=lambda a: Call("get", URL, {"object_id": "w-1"}),
            expect=expect,
            listing=True,
        ),
    )


def test_retrieve_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == audit_json(attempt.target)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="auditlog.view",
            allowed=AUDITORS,
            setup=retail_row,
            request=lambda a: Call("get", f"{URL}{a.target.pk}/"),
            expect=expect,
        ),
    )


def test_export_matrix(authz_world):
    def expect(attempt, response):
        row = attempt.target
        assert response["Content-Type"] == "text/csv"
        assert response["Content-Disposition"].startswith('attachment; filename="audit-log-')
        assert csv_rows(response) == [
            list(AUDIT_CSV_COLUMNS),
            [
                row.created_at.isoformat(),
                str(row.organization_id),
                "system",
                "system",
                "worker",
                "widget.update",
                "testapp.widget",
                "w-1",
                "'=HYPERLINK(evil)",
                '{"name": ["a", "b"]}',
                "",
            ],
        ]

    def outsider_expect(attempt, response):
        assert response.status_code == 200
        assert csv_rows(response) == [list(AUDIT_CSV_COLUMNS)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="auditlog.export",
            allowed=EXPORTERS,
            setup=retail_row,
            request=lambda a: Call("get", f"{URL}export/", {"object_id": "w-1"}),
            expect=expect,
            outsider_expect=outsider_expect,
        ),
    )


# --- filters and budgets -----------------------------------------------------------------------


def test_it_filters_by_action_prefix_actor_object_and_time(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    client = session_client(owner)
    now = timezone.now()
    old = audit.record(actor=SYSTEM, action="device.create", organization_id=tree["retail"].pk)
    recent = audit.record(actor=SYSTEM, action="device.update", organization_id=tree["hospital"].pk)
    assert ids(client.get(URL, {"action": "device."})) == [str(recent.pk), str(old.pk)]
    assert ids(client.get(URL, {"action": "device.update"})) == [str(recent.pk)]
    assert ids(client.get(URL, {"action": "device.", "organization": str(tree["retail"].pk)})) == [
        str(old.pk)
    ]
    assert ids(client.get(URL, {"action": "device.", "actor": "SYST"})) == [
        str(recent.pk),
        str(old.pk),
    ]
    later = (now + timedelta(hours=1)).isoformat()
    assert ids(client.get(URL, {"action": "device.", "since": later})) == []
    assert ids(client.get(URL, {"action": "device.", "until": later})) == [
        str(recent.pk),
        str(old.pk),
    ]


def test_it_refuses_a_malformed_filter_with_a_field_error(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    response = session_client(owner).get(URL, {"since": "yesterday"})
    assert response.status_code == 400
    assert list(error(response)["fields"]) == ["since"]


def test_it_never_shows_rows_of_a_sibling_organization(tree):
    owner = make_member(tree["acme"], Role.OWNER)
    audit.record(actor=SYSTEM, action="secret.rotate", organization_id=tree["globex"].pk)
    assert ids(session_client(owner).get(URL, {"action": "secret."})) == []


@pytest.mark.parametrize("rows", [3, 30])
def test_the_list_costs_a_constant_number_of_queries(tree, rows, django_assert_num_queries):
    owner = make_member(tree["acme"], Role.OWNER)
    for number in range(rows):
        audit.record(actor=SYSTEM, action=f"thing.{number}", organization_id=tree["retail"].pk)
    client = session_client(owner)
    # the session's user, the MFA middleware's check, the actor's memberships, the page
    with django_assert_num_queries(4):
        response = client.get(URL, {"action": "thing.", "page_size": 100})
    assert len(response.json()["results"]) == rows
