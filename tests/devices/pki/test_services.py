"""Credential services: revocation, renewal, device tokens; each audited on the device."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, Event
from apps.devices import replacement
from apps.devices import services as device_services
from apps.devices.models_pki import BrokerState, DeviceCertificate, DeviceToken
from apps.devices.pki import certs, services
from tests.factories import actor, make_member

from .support import csr_pem, fleet_device, issue

pytestmark = pytest.mark.django_db


def broker_version() -> int:
    state = BrokerState.objects.filter(pk=1).first()
    return state.version if state else 0


def device_audit(device, action: str) -> list[dict]:
    rows = AuditLog.objects.filter(object_id=str(device.pk), action=action).order_by("created_at")
    return [row.changes for row in rows]


# --- certificates ------------------------------------------------------------------------------


def test_revoking_a_certificate_is_audited_on_the_device_and_moves_the_broker(tree):
    device = fleet_device(tree["retail"])
    row = issue(device)
    before = broker_version()
    owner = actor(make_member(tree["acme"], Role.OPERATOR))
    services.certificate_revoke(actor=owner, certificate=row, reason="key_compromise")
    row.refresh_from_db()
    assert (row.status, row.revocation_reason) == ("revoked", "key_compromise")
    assert broker_version() == before + 1
    assert device_audit(device, "device.certificate_revoke") == [
        {
            "certificate": str(row.pk),
            "serial_number": row.serial_number,
            "status": ["active", "revoked"],
            "reason": "key_compromise",
        }
    ]
    event = Event.objects.get(type="device.certificate_revoked")
    assert event.payload == {
        "id": str(device.pk),
        "serial": "SN-1",
        "certificate": str(row.pk),
        "serial_number": row.serial_number,
        "reason": "key_compromise",
    }
    with pytest.raises(ValidationError) as caught:
        services.certificate_revoke(actor=owner, certificate=row, reason="key_compromise")
    assert caught.value.message_dict == {"status": ["This certificate is already revoked."]}


def test_a_revocation_needs_a_known_reason_and_the_permission(tree):
    row = issue(fleet_device(tree["retail"]))
    with pytest.raises(ValidationError) as caught:
        services.certificate_revoke(actor=SYSTEM, certificate=row, reason="because")
    assert list(caught.value.message_dict) == ["reason"]
    viewer = actor(make_member(tree["acme"], Role.VIEWER))
    with pytest.raises(PermissionDenied):
        services.certificate_revoke(actor=viewer, certificate=row, reason="unspecified")
    row.refresh_from_db()
    assert row.status == "active"


def test_revoking_a_devices_credentials_revokes_every_certificate_and_token(tree):
    device = fleet_device(tree["retail"])
    first, second = issue(device), issue(device)
    token, _ = services.device_token_create(actor=SYSTEM, device=device, label="modem")
    other = fleet_device(tree["retail"], "SN-2")
    untouched = issue(other)
    assert services.device_credentials_revoke(
        actor=SYSTEM, device=device, reason="key_compromise"
    ) == (2, 1)
    statuses = dict(DeviceCertificate.objects.values_list("pk", "status"))
    assert statuses == {first.pk: "revoked", second.pk: "revoked", untouched.pk: "active"}
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert device_audit(device, "device.credentials_revoke") == [
        {"reason": "key_compromise", "certificates": 2, "tokens": 1}
    ]
    payload = Event.objects.filter(type="device.credentials_revoked").get().payload
    assert payload == {
        "id": str(device.pk),
        "serial": "SN-1",
        "reason": "key_compromise",
        "certificates": 2,
        "tokens": 1,
    }


def test_renewal_supersedes_the_previous_certificate_without_revoking_it(tree):
    device = fleet_device(tree["retail"])
    old = issue(device)
    before = broker_version()
    row, chain_pem = services.certificate_renew(
        actor=services.device_actor(device), device=device, csr=csr_pem(str(device.pk))
    )
    old.refresh_from_db()
    assert (old.status, old.revoked_at, row.status) == ("superseded", None, "active")
    assert certs.fingerprint(certs.load_chain(chain_pem)[0]) == row.fingerprint
    assert broker_version() == before  # nothing for the broker: the old one still connects
    audit_row = AuditLog.objects.get(action="device.certificate_renew")
    assert (audit_row.actor_kind, audit_row.actor_device_id, audit_row.source) == (
        "device",
        device.pk,
        "device",
    )
    assert audit_row.changes == {
        "certificate": str(row.pk),
        "serial_number": row.serial_number,
        "not_after": row.not_after.isoformat(),
        "superseded": [str(old.pk)],
    }


def test_a_device_renews_only_its_own_certificate_and_only_while_in_service(tree):
    device = fleet_device(tree["retail"])
    other = fleet_device(tree["retail"], "SN-2")
    with pytest.raises(PermissionDenied):
        services.certificate_renew(
            actor=services.device_actor(other), device=device, csr=csr_pem(str(device.pk))
        )
    with pytest.raises(ValidationError) as caught:
        services.certificate_renew(actor=SYSTEM, device=device, csr=csr_pem(str(other.pk)))
    assert list(caught.value.message_dict) == ["csr"]
    suspended = fleet_device(tree["retail"], "SN-3", state="suspended")
    with pytest.raises(ValidationError) as caught:
        services.certificate_renew(actor=SYSTEM, device=suspended, csr=csr_pem(str(suspended.pk)))
    assert caught.value.message_dict == {
        "state": ["Cannot renew the certificate of a suspended device."]
    }
    assert DeviceCertificate.objects.count() == 0


# --- tokens ------------------------------------------------------------------------------------


def test_a_token_is_shown_once_and_stored_as_prefix_hash_and_broker_hash(tree):
    device = fleet_device(tree["retail"])
    operator = actor(make_member(tree["acme"], Role.OPERATOR))
    before = broker_version()
    row, token = services.device_token_create(actor=operator, device=device, label=" modem ")
    prefix = token.split("_")[2]
    assert token.startswith(f"fo_dev_{prefix}_") and len(prefix) == 12
    assert (row.prefix, row.label, row.created_by_id) == (prefix, "modem", operator.user_id)
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.broker_hash.startswith("$7$101$")
    assert token not in row.broker_hash and token not in str(AuditLog.objects.values_list())
    assert broker_version() == before + 1
    assert device_audit(device, "device.token_create") == [
        {"token": str(row.pk), "prefix": prefix, "label": "modem", "expires_at": None}
    ]


def test_authenticate_accepts_the_token_and_refuses_everything_else(tree):
    device = fleet_device(tree["retail"])
    row, token = services.device_token_create(actor=SYSTEM, device=device)
    found = services.authenticate_token(token)
    assert (found.pk, found.device.pk) == (row.pk, device.pk)
    assert services.authenticate_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert services.authenticate_token(f"fo_api_{row.prefix}_x") is None
    assert services.authenticate_token("fo_dev_short_x") is None
    assert services.authenticate_token("") is None


def test_authenticate_refuses_expired_revoked_and_retired_devices(tree):
    device = fleet_device(tree["retail"])
    expired, expired_token = services.device_token_create(
        actor=SYSTEM, device=device, expires_at=timezone.now() + dt.timedelta(seconds=30)
    )
    DeviceToken.objects.filter(pk=expired.pk).update(expires_at=timezone.now())
    assert services.authenticate_token(expired_token) is None

    revoked, revoked_token = services.device_token_create(actor=SYSTEM, device=device)
    services.device_token_revoke(actor=SYSTEM, token=revoked)
    assert services.authenticate_token(revoked_token) is None

    retired = fleet_device(tree["retail"], "SN-2")
    _, retired_token = services.device_token_create(actor=SYSTEM, device=retired)
    retired.state = "decommissioned"
    retired.save(update_fields=["state"])
    assert services.authenticate_token(retired_token) is None


def test_last_used_at_moves_at_most_once_a_minute(tree):
    device = fleet_device(tree["retail"])
    row, token = services.device_token_create(actor=SYSTEM, device=device)
    first = services.authenticate_token(token).last_used_at
    assert services.authenticate_token(token).last_used_at == first
    earlier = first - dt.timedelta(minutes=2)
    DeviceToken.objects.filter(pk=row.pk).update(last_used_at=earlier)
    later = services.authenticate_token(token).last_used_at
    row.refresh_from_db()
    assert later > earlier and row.last_used_at == later


def test_token_creation_refuses_past_expiry_and_retired_devices(tree):
    device = fleet_device(tree["retail"])
    with pytest.raises(ValidationError) as caught:
        services.device_token_create(
            actor=SYSTEM, device=device, expires_at=timezone.now() - dt.timedelta(minutes=1)
        )
    assert caught.value.message_dict == {"expires_at": ["Must be in the future."]}
    retired = fleet_device(tree["retail"], "SN-2", state="replaced")
    with pytest.raises(ValidationError) as caught:
        services.device_token_create(actor=SYSTEM, device=retired)
    assert caught.value.message_dict == {"device": ["A replaced device cannot get a token."]}
    assert DeviceToken.objects.count() == 0


def test_revoking_a_token_is_audited_and_refused_twice(tree):
    device = fleet_device(tree["retail"])
    row, _ = services.device_token_create(actor=SYSTEM, device=device)
    before = broker_version()
    services.device_token_revoke(actor=SYSTEM, token=row)
    assert broker_version() == before + 1
    row.refresh_from_db()
    assert device_audit(device, "device.token_revoke") == [
        {
            "token": str(row.pk),
            "prefix": row.prefix,
            "revoked_at": [None, row.revoked_at.isoformat()],
        }
    ]
    with pytest.raises(ValidationError) as caught:
        services.device_token_revoke(actor=SYSTEM, token=row)
    assert caught.value.message_dict == {"revoked_at": ["This token is already revoked."]}


# --- lifecycle ---------------------------------------------------------------------------------


def test_a_replaced_device_loses_its_credentials_in_the_same_transaction(tree):
    old = fleet_device(tree["retail"], "OLD")
    new = fleet_device(tree["retail"], "NEW", state="escrow")
    new.manufacturer = old.manufacturer
    new.save(update_fields=["manufacturer"])
    certificate = issue(old)
    token, _ = services.device_token_create(actor=SYSTEM, device=old)
    replacement.device_replace(actor=SYSTEM, old=old, new=new)
    certificate.refresh_from_db()
    token.refresh_from_db()
    assert (certificate.status, certificate.revocation_reason) == ("revoked", "replaced")
    assert token.revoked_at is not None


def test_decommissioning_revokes_the_credentials(tree):
    device = fleet_device(tree["retail"])
    certificate = issue(device)
    device_services.device_transition(actor=SYSTEM, device=device, transition="decommission")
    certificate.refresh_from_db()
    assert (certificate.status, certificate.revocation_reason) == ("revoked", "decommissioned")
