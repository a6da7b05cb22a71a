from __future__ import annotations

import datetime
import decimal
import uuid
from collections.abc import Iterator

import pytest
from django.db import connection, transaction
from django.db.utils import ProgrammingError

from apps.accounts import services
from apps.accounts.actors import actor_for_api_key, actor_for_user
from apps.accounts.roles import Role
from apps.core import audit
from apps.core.actors import SYSTEM, Actor, ActorKind
from apps.core.context import reset_request_id, set_request_id
from apps.core.models import AuditLog
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

FIELDS = (
    "organization_id",
    "actor_kind",
    "actor_user_id",
    "actor_api_key_id",
    "actor_device_id",
    "actor_label",
    "source",
    "action",
    "object_type",
    "object_id",
    "object_repr",
    "changes",
    "request_id",
)


@pytest.fixture
def request_id() -> Iterator[str]:
    token = set_request_id("req-0123456789abcdef")
    yield "req-0123456789abcdef"
    reset_request_id(token)


def _row(row: AuditLog) -> dict[str, object]:
    return AuditLog.objects.filter(pk=row.pk).values(*FIELDS).get()


# --- append-only -------------------------------------------------------------------------------


def test_the_database_refuses_to_update_an_audit_row(tree) -> None:
    row = audit.record(actor=SYSTEM, action="organization.update", obj=tree["acme"])

    refused = r"core_auditlog is append-only \(UPDATE refused\)"
    with pytest.raises(ProgrammingError, match=refused), transaction.atomic():
        AuditLog.objects.filter(pk=row.pk).update(action="organization.delete")

    assert AuditLog.objects.get(pk=row.pk).action == "organization.update"


def test_the_database_refuses_to_save_changes_to_an_audit_row(tree) -> None:
    row = audit.record(actor=SYSTEM, action="organization.update", obj=tree["acme"])
    row.actor_label = "someone else"

    with (
        pytest.raises(ProgrammingError, match=r"append-only \(UPDATE refused\)"),
        transaction.atomic(),
    ):
        row.save()

    assert AuditLog.objects.get(pk=row.pk).actor_label == "system"


def test_the_database_refuses_to_delete_an_audit_row_even_with_raw_sql(tree) -> None:
    row = audit.record(actor=SYSTEM, action="organization.update", obj=tree["acme"])

    refused = r"append-only \(DELETE refused\)"
    with pytest.raises(ProgrammingError, match=refused), transaction.atomic():
        AuditLog.objects.filter(pk=row.pk).delete()
    with (
        pytest.raises(ProgrammingError, match=refused),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM core_auditlog")

    assert AuditLog.objects.filter(pk=row.pk).count() == 1


# --- record ------------------------------------------------------------------------------------


def test_record_captures_a_user_actor_the_source_and_the_request_id(tree, request_id) -> None:
    user = UserFactory(email="ada@example.com")
    acme = tree["acme"]

    row = audit.record(
        actor=actor_for_user(user, source="portal"),
        action="organization.update",
        obj=acme,
        changes={"name": ["Acme", "Acme Inc"]},
    )

    assert _row(row) == {
        "organization_id": None,  # an organization has no organization_id of its own
        "actor_kind": "user",
        "actor_user_id": user.pk,
        "actor_api_key_id": None,
        "actor_device_id": None,
        "actor_label": "ada@example.com",
        "source": "portal",
        "action": "organization.update",
        "object_type": "accounts.organization",
        "object_id": str(acme.pk),
        "object_repr": "Acme",
        "changes": {"name": ["Acme", "Acme Inc"]},
        "request_id": "req-0123456789abcdef",
    }


def test_record_captures_an_api_key_actor_and_the_objects_organization(tree) -> None:
    acme = tree["acme"]
    issued = services.api_key_create(
        actor=SYSTEM, organization=acme, name="erp", role=Role.OPERATOR
    )
    key = issued.api_key

    row = audit.record(actor=actor_for_api_key(key), action="apikey.use", obj=key)

    assert _row(row) == {
        "organization_id": acme.pk,
        "actor_kind": "api_key",
        "actor_user_id": None,
        "actor_api_key_id": key.pk,
        "actor_device_id": None,
        "actor_label": f"API key erp ({key.prefix})",
        "source": "api",
        "action": "apikey.use",
        "object_type": "accounts.apikey",
        "object_id": str(key.pk),
        "object_repr": str(key),
        "changes": {},
        "request_id": "",
    }


def test_record_without_an_object_keeps_the_given_labels_and_plain_json_changes(
    tree, request_id
) -> None:
    device_id = uuid.UUID("01890000-0000-7000-8000-000000000001")
    device = Actor(kind=ActorKind.DEVICE, label="device 42", device_id=device_id, source="device")
    changes = {
        "seen": [None, datetime.datetime(2025, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)],
        "ratio": [decimal.Decimal("0.50"), decimal.Decimal("1.25")],
        "owner": [tree["acme"], tree["globex"]],
        "tags": [("a", "b"), {"c"}],
    }

    row = audit.record(
        actor=device,
        action="device.report",
        organization_id=tree["retail"].pk,
        changes=changes,
        object_type="devices.device",
        object_id=str(device_id),
        object_repr="x" * 300,
    )

    assert _row(row) == {
        "organization_id": tree["retail"].pk,
        "actor_kind": "device",
        "actor_user_id": None,
        "actor_api_key_id": None,
        "actor_device_id": device_id,
        "actor_label": "device 42",
        "source": "device",
        "action": "device.report",
        "object_type": "devices.device",
        "object_id": str(device_id),
        "object_repr": "x" * 255,
        "changes": {
            "seen": [None, "2025-01-02T03:04:05+00:00"],
            "ratio": ["0.50", "1.25"],
            "owner": [str(tree["acme"].pk), str(tree["globex"].pk)],
            "tags": [["a", "b"], ["c"]],
        },
        "request_id": "req-0123456789abcdef",
    }


def test_record_by_the_system_is_labelled_system_from_the_worker(tree) -> None:
    row = audit.record(actor=SYSTEM, action="organization.update", obj=tree["acme"])

    assert (row.actor_kind, row.actor_label, row.source, row.actor_user_id) == (
        "system",
        "system",
        "worker",
        None,
    )


# --- snapshot and diff -------------------------------------------------------------------------


def test_snapshot_reads_foreign_keys_as_ids(tree) -> None:
    retail = tree["retail"]

    assert audit.snapshot(retail, ["name", "parent", "kind"]) == {
        "name": "Retail Co",
        "parent": str(tree["acme"].pk),
        "kind": "customer",
    }


def test_diff_lists_changed_added_and_removed_fields_in_order() -> None:
    before = {"name": "Acme", "kind": "customer", "slug": "acme", "gone": 1}
    after = {"name": "Acme Inc", "kind": "customer", "slug": "acme", "new": [1, 2]}

    assert audit.diff(before, after) == {
        "name": ["Acme", "Acme Inc"],
        "gone": [1, None],
        "new": [None, [1, 2]],
    }
    assert list(audit.diff(before, after)) == ["name", "gone", "new"]
    assert audit.diff(before, dict(before)) == {}
