from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from apps.accounts.models import Membership, Organization, User
from apps.accounts.roles import Role
from apps.core import audit
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/core/auditlog/"
CSV_HEADER = (
    "created_at,organization_id,actor_kind,actor_label,source,action,object_type,object_id,"
    "object_repr,changes,request_id\r\n"
)


def _staff(
    client: Client, *, organization: Organization | None = None, role: str = Role.OWNER
) -> User:
    """A signed-in staff member (not a superuser) allowed to open the audit log admin."""
    user = UserFactory(is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="core", codename="view_auditlog")
    )
    if organization is not None:
        Membership.objects.create(organization=organization, user=user, role=role)
    client.force_login(user)
    return user


def _superuser(client: Client) -> User:
    user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(user)
    return user


@pytest.fixture
def rows(tree) -> dict[str, AuditLog]:
    """One ``test.row`` audit row in each of acme, retail (below acme) and globex."""
    return {
        key: audit.record(
            actor=SYSTEM,
            action="test.row",
            organization_id=tree[key].pk,
            object_type="tests.thing",
            object_id=f"{key}-row",
            object_repr=f"{key} row",
        )
        for key in ("acme", "retail", "globex")
    }


def _listed(client: Client, query: str = "action__exact=test.row") -> list[str]:
    response = client.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    return sorted(row.object_id for row in response.context["cl"].result_list)


def test_superusers_see_every_audit_row(client, rows) -> None:
    _superuser(client)

    assert _listed(client) == ["acme-row", "globex-row", "retail-row"]


def test_staff_see_only_audit_rows_in_their_organizations_subtree(client, rows, tree) -> None:
    _staff(client, organization=tree["acme"])

    assert _listed(client) == ["acme-row", "retail-row"]


def test_staff_without_a_membership_see_no_audit_row(client, rows) -> None:
    _staff(client)

    assert _listed(client) == []


def test_staff_whose_role_cannot_view_the_audit_log_see_no_row(client, rows, tree) -> None:
    _staff(client, organization=tree["acme"], role=Role.VIEWER)

    assert _listed(client) == []


def test_staff_without_the_admin_permission_are_refused(client, rows, tree) -> None:
    user = UserFactory(is_staff=True)
    Membership.objects.create(organization=tree["acme"], user=user, role=Role.OWNER)
    client.force_login(user)

    assert client.get(CHANGELIST).status_code == 403


def test_search_finds_rows_by_object_id_and_actor_label(client, rows) -> None:
    _superuser(client)

    assert _listed(client, "action__exact=test.row&q=retail-row") == ["retail-row"]
    assert _listed(client, "action__exact=test.row&q=syst") == [
        "acme-row",
        "globex-row",
        "retail-row",
    ]


def test_the_audit_admin_refuses_add_change_and_delete(client, rows) -> None:
    _superuser(client)
    row = rows["acme"]

    assert client.get(f"{CHANGELIST}add/").status_code == 403
    assert client.get(f"{CHANGELIST}{row.pk}/change/").status_code == 200  # read-only view
    assert client.post(f"{CHANGELIST}{row.pk}/change/", {"action": "x"}).status_code == 403
    assert client.post(f"{CHANGELIST}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    response = client.get(CHANGELIST)
    assert list(response.context["cl"].model_admin.get_actions(response.wsgi_request)) == [
        "export_csv"
    ]
    assert AuditLog.objects.get(pk=row.pk).action == "test.row"


def _export(client: Client, rows: list[AuditLog]):  # type: ignore[no-untyped-def]
    return client.post(
        CHANGELIST,
        {"action": "export_csv", "_selected_action": [str(row.pk) for row in rows]},
    )


def test_the_csv_export_streams_the_selected_rows(client, rows, tree) -> None:
    _superuser(client)

    response = _export(client, [rows["acme"], rows["globex"]])

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == 'attachment; filename="audit-log.csv"'
    body = b"".join(response.streaming_content).decode()
    lines = body.splitlines(keepends=True)
    assert lines[0] == CSV_HEADER
    expected = [
        f"{rows[key].created_at.isoformat()},{tree[key].pk},system,system,worker,test.row,"
        f"tests.thing,{key}-row,{key} row,{{}},\r\n"
        for key in ("acme", "globex")
    ]
    assert sorted(lines[1:]) == sorted(expected)


def test_staff_export_only_rows_in_their_scope(client, rows, tree) -> None:
    _staff(client, organization=tree["acme"], role=Role.ADMIN)

    response = _export(client, list(rows.values()))

    lines = b"".join(response.streaming_content).decode().splitlines()
    assert sorted(line.split(",")[7] for line in lines[1:]) == ["acme-row", "retail-row"]


def test_staff_whose_role_cannot_export_are_not_offered_the_export(client, rows, tree) -> None:
    _staff(client, organization=tree["acme"], role=Role.APPROVER)  # auditlog.view only

    response = _export(client, [rows["acme"]])

    assert response.status_code == 200  # the changelist again, with "no action selected"
    assert response["Content-Type"] == "text/html; charset=utf-8"
    assert list(response.context["cl"].model_admin.get_actions(response.wsgi_request)) == []
