"""The certificate audit finds each seeded problem, exactly, and nothing in the clean rows."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import Event
from apps.devices.models import Device
from apps.devices.models_pki import DeviceCertificate, DeviceToken
from apps.devices.pki import audit, services
from apps.devices.pki.tasks import certificate_audit
from tests.factories import actor, make_member

from .support import (
    certificate,
    factory_certificate,
    fleet_device,
    issue,
    make_ca,
    register_ca,
    rsa_key,
)

pytestmark = pytest.mark.django_db


def shift(row, **fields) -> None:
    type(row).objects.filter(pk=row.pk).update(**fields)


def seed(tree) -> dict[str, object]:
    """Every problem once, next to rows that look alike but are fine."""
    now = timezone.now()
    retail = tree["retail"]
    rows: dict[str, object] = {}
    rows["clean"] = issue(fleet_device(retail, "CLEAN"))
    rows["expiring"] = issue(fleet_device(retail, "EXPIRING"))
    shift(rows["expiring"], not_after=now + dt.timedelta(days=10))
    rows["expired"] = issue(fleet_device(retail, "EXPIRED"))
    shift(rows["expired"], not_after=now - dt.timedelta(days=1))
    rows["aged"] = issue(fleet_device(retail, "AGED"))
    shift(rows["aged"], not_before=now - dt.timedelta(days=800))
    # revoked, yet seen after: the certificate itself
    seen = fleet_device(retail, "SEEN")
    rows["seen_ok"] = issue(seen)
    rows["seen"] = issue(seen)
    services.certificate_revoke(actor=SYSTEM, certificate=rows["seen"], reason="key_compromise")
    shift(rows["seen"], last_seen_at=now + dt.timedelta(hours=1))
    quiet = issue(fleet_device(retail, "QUIET"))
    services.certificate_revoke(actor=SYSTEM, certificate=quiet, reason="unspecified")
    shift(quiet, last_seen_at=now - dt.timedelta(hours=1))
    # every credential revoked, yet the device was seen after the last revocation
    rows["silenced"] = silenced(retail, "SILENCED", seen_after=True)
    silenced(retail, "SILENT-OK", seen_after=False)
    # one factory certificate on two devices
    ca = make_ca()
    authority = register_ca(tree["acme"], ca)
    leaf, _ = certificate("CLONED", issuer=ca)
    rows["shared_a"] = factory_certificate(fleet_device(retail, "TWIN-A"), authority, leaf)
    rows["shared_b"] = factory_certificate(fleet_device(retail, "TWIN-B"), authority, leaf)
    weak_leaf, _ = certificate("WEAK", issuer=ca, key=rsa_key(1024))
    rows["weak_rsa"] = factory_certificate(fleet_device(retail, "WEAK-RSA"), authority, weak_leaf)
    rows["weak_sha1"] = issue(fleet_device(retail, "WEAK-SHA1"))
    shift(rows["weak_sha1"], signature_hash="sha1")
    rows["weak_curve"] = issue(fleet_device(retail, "WEAK-EC"))
    shift(rows["weak_curve"], key_size=224)
    revoked_weak = issue(fleet_device(retail, "WEAK-REVOKED"))
    services.certificate_revoke(actor=SYSTEM, certificate=revoked_weak, reason="unspecified")
    shift(revoked_weak, key_size=224)
    rows["foreign"] = issue(fleet_device(tree["globex"], "GLOBEX"))
    shift(rows["foreign"], not_after=now + dt.timedelta(days=5))
    return rows


def silenced(organization, serial: str, *, seen_after: bool) -> Device:
    device = fleet_device(organization, serial)
    issue(device)
    services.device_token_create(actor=SYSTEM, device=device)
    services.device_credentials_revoke(actor=SYSTEM, device=device, reason="key_compromise")
    revoked_at = timezone.now() - dt.timedelta(hours=2)
    DeviceCertificate.objects.filter(device=device).update(revoked_at=revoked_at)
    DeviceToken.objects.filter(device=device).update(revoked_at=revoked_at)
    seen = revoked_at + dt.timedelta(hours=1 if seen_after else -1)
    Device.objects.filter(pk=device.pk).update(last_seen_at=seen)
    return device


def key(kind: str, row) -> tuple[str, object, object]:
    if isinstance(row, Device):
        return kind, None, row.pk
    return kind, row.pk, row.device_id


def ordered(kind: str, *rows) -> list[tuple[str, object, object]]:
    """Findings of one kind come oldest certificate first (uuid7 ids)."""
    return [key(kind, row) for row in sorted(rows, key=lambda row: row.pk)]


def test_the_audit_finds_each_seeded_problem_exactly(tree, django_assert_num_queries):
    rows = seed(tree)
    admin = actor(make_member(tree["acme"], Role.VIEWER))
    with django_assert_num_queries(6):  # one query per kind, plus the silenced devices
        found = audit.findings(actor=admin)
    expected = [
        *ordered("expiring", rows["expiring"], rows["expired"]),
        key("aged", rows["aged"]),
        key("revoked_seen", rows["seen"]),
        key("revoked_seen", rows["silenced"]),
        *ordered("shared", rows["shared_a"], rows["shared_b"]),
        *ordered("weak_key", rows["weak_rsa"], rows["weak_sha1"], rows["weak_curve"]),
    ]
    assert [(f.kind, f.certificate_id, f.device_id) for f in found] == expected
    details = {(f.kind, f.serial): f.detail for f in found}
    expiring = DeviceCertificate.objects.get(pk=rows["expiring"].pk).not_after
    expired = DeviceCertificate.objects.get(pk=rows["expired"].pk).not_after
    aged = DeviceCertificate.objects.get(pk=rows["aged"].pk).not_before
    assert details[("expiring", "EXPIRING")] == f"Expires on {expiring:%Y-%m-%d} (in 9 days)."
    assert details[("expiring", "EXPIRED")] == f"Expired on {expired:%Y-%m-%d} and was not renewed."
    assert (
        details[("aged", "AGED")] == f"Issued on {aged:%Y-%m-%d}, 800 days ago (rotate after 730)."
    )
    assert details[("weak_key", "WEAK-RSA")] == "Weak: RSA 1024-bit key."
    assert details[("weak_key", "WEAK-SHA1")] == "Weak: SHA1 signature."
    assert details[("weak_key", "WEAK-EC")] == "Weak: EC 224-bit key."
    assert details[("revoked_seen", "SEEN")].startswith("Revoked on ")
    assert details[("revoked_seen", "SILENCED")].startswith("Every credential was revoked (last on")


def test_findings_follow_the_actors_scope_and_the_kind_filter(tree):
    rows = seed(tree)
    outsider = actor(make_member(tree["globex"], Role.VIEWER))
    assert [(f.kind, f.certificate_id) for f in audit.findings(actor=outsider)] == [
        ("expiring", rows["foreign"].pk)
    ]
    nobody = actor(make_member(tree["globex"], Role.BILLING))
    assert audit.findings(actor=nobody) == []
    hospital_only = audit.findings(actor=SYSTEM, organization_path=tree["hospital"].path)
    assert hospital_only == []
    shared = audit.findings(actor=SYSTEM, kinds=["shared"])
    assert {f.kind for f in shared} == {"shared"} and len(shared) == 2
    assert len(audit.findings(actor=SYSTEM, kinds=["weak_key"], limit=1)) == 1


def test_the_daily_task_emits_one_small_event_per_organization_with_findings(tree):
    seed(tree)
    zero = dict.fromkeys(audit.KINDS, 0)
    assert certificate_audit() == {"organizations": 2}
    events = {
        event.organization_id: event.payload
        for event in Event.objects.filter(type="certificates.audit")
    }
    assert events == {
        tree["retail"].pk: {
            "counts": {"expiring": 2, "aged": 1, "revoked_seen": 2, "shared": 2, "weak_key": 3},
            "total": 10,
        },
        tree["globex"].pk: {"counts": zero | {"expiring": 1}, "total": 1},
    }


def test_a_clean_fleet_has_no_findings_and_no_events(tree):
    issue(fleet_device(tree["retail"]))
    assert audit.findings(actor=SYSTEM) == []
    assert audit.emit_audit_events() == 0
    assert not Event.objects.filter(type="certificates.audit").exists()
