"""POST /device/v1/enroll with a claim token: new devices, pre-registered escrow devices,
quarantine and approval, re-enrollment rules, and every refusal audited and counted."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.utils import timezone

from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, Event
from apps.devices import enrollment_guard, enrollment_policies, services
from apps.devices.choices import CertificateKind, CredentialStatus, DeviceState
from apps.devices.models import ClaimToken, Device, DeviceCertificate, DeviceToken
from apps.devices.pki import authorities
from apps.devices.pki import services as credential_services
from apps.profiles.models import ProfileVersion
from tests.devices.registry_support import make_device

from .support import (
    body,
    chain_verifies,
    claim_policy,
    claim_token,
    common_name,
    enroll,
    make_profile,
    new_key,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme_batch(tree):
    """Acme's sensor profile, a claim-token policy landing devices in Retail, a token."""
    profile = make_profile(tree["acme"], interval=30)
    policy = claim_policy(tree["acme"], profile, target_organization=tree["retail"], name="Batch 7")
    return profile, policy, claim_token(policy, max_uses=3)


def enroll_audit():
    return list(
        AuditLog.objects.filter(action__startswith="device.enroll")
        .order_by("created_at", "id")
        .values_list("action", "changes__outcome", "changes__reason", "object_id")
    )


def test_a_device_with_only_a_claim_token_ends_active_with_a_certificate(tree, acme_batch):
    profile, policy, token = acme_batch
    key = new_key()
    response = enroll(body("SN-1", token=token, key=key))
    assert response.status_code == 201, response.content
    data = response.json()
    device = Device.objects.get(serial="SN-1")
    root = authorities.root_certificate_pem()
    certificate = DeviceCertificate.objects.get(device=device)
    assert (device.state, device.organization, device.manufacturer) == (
        DeviceState.ACTIVE,
        tree["retail"],
        tree["acme"],
    )
    assert device.profile_version == ProfileVersion.objects.get(profile=profile, number=1)
    assert set(data) == {
        "device_id",
        "state",
        "organization_id",
        "certificate",
        "certificate_chain",
        "ca_certificate",
        "broker",
        "topics",
        "heartbeat",
        "configuration",
        "renew_after",
        "expires_at",
    }
    assert (data["device_id"], data["state"], data["organization_id"]) == (
        str(device.pk),
        "active",
        str(tree["retail"].pk),
    )
    assert data["certificate"] == certificate.certificate_pem
    assert common_name(data["certificate"]) == str(device.pk)
    assert chain_verifies(data["certificate"], data["certificate_chain"], root)
    assert data["ca_certificate"] == root
    assert data["broker"] == {
        "host": settings.MQTT_PUBLIC_HOST,
        "port": settings.MQTT_DEVICE_PORT,
        "token_port": settings.MQTT_TOKEN_PORT,
        "tls": True,
    }
    assert data["topics"] == {"prefix": f"devices/{device.pk}/"}
    assert data["heartbeat"] == {"interval_seconds": 30, "missed_beats": 3}
    assert data["configuration"] == {}
    expires = certificate.not_after
    assert data["expires_at"] == expires.isoformat().replace("+00:00", "Z")
    renew = expires - dt.timedelta(days=settings.PKI_RENEW_BEFORE_DAYS)
    assert data["renew_after"] == renew.isoformat().replace("+00:00", "Z")
    assert (certificate.kind, certificate.status) == (
        CertificateKind.OPERATIONAL,
        CredentialStatus.ACTIVE,
    )
    assert ClaimToken.objects.get(policy=policy).uses == 1
    assert device.provisioning["transition"] == "enroll"
    assert device.last_seen_at is not None
    assert enroll_audit() == [
        ("device.enroll", "registered", None, str(device.pk)),
    ]
    enrolled = Event.objects.get(type="device.enrolled")
    assert enrolled.payload == {
        "id": str(device.pk),
        "serial": "SN-1",
        "state": "active",
        "outcome": "registered",
        "method": "claim_token",
        "policy": str(policy.pk),
        "credential": "certificate",
    }


def test_a_pre_registered_escrow_device_is_matched_by_serial_and_activated(tree, acme_batch):
    profile, policy, token = acme_batch
    version = ProfileVersion.objects.get(profile=profile)
    device = services.device_register(
        actor=SYSTEM, organization=tree["store"], profile_version=version, serial="SN-2"
    )
    response = enroll(body("SN-2", token=token, key=new_key()))
    assert response.status_code == 200, response.content
    device.refresh_from_db()
    assert (response.json()["device_id"], response.json()["state"]) == (str(device.pk), "active")
    assert (device.state, device.organization) == (DeviceState.ACTIVE, tree["store"])
    assert device.provisioning["transition"] == "activate"
    assert Device.objects.filter(serial="SN-2").count() == 1
    transition = AuditLog.objects.get(action="device.transition", object_id=str(device.pk))
    assert (transition.actor_kind, transition.actor_device_id, transition.changes) == (
        "device",
        device.pk,
        {"state": ["escrow", "active"], "transition": "activate", "reason": "enrollment"},
    )
    assert enroll_audit() == [("device.enroll", "enrolled", None, str(device.pk))]
    assert ClaimToken.objects.get(policy=policy).uses == 1


def test_keep_escrow_gives_credentials_but_leaves_the_device_in_escrow(tree):
    profile = make_profile(tree["acme"])
    policy = claim_policy(tree["acme"], profile, escrow_action="keep_escrow")
    token = claim_token(policy)
    device = make_device(tree["acme"], ProfileVersion.objects.get(profile=profile), "SN-3")
    response = enroll(body("SN-3", token=token, key=new_key()))
    assert response.status_code == 200, response.content
    device.refresh_from_db()
    assert (response.json()["state"], device.state, device.provisioning) == ("escrow", "escrow", {})
    assert response.json()["heartbeat"] == {"interval_seconds": 60, "missed_beats": 3}
    assert DeviceCertificate.objects.filter(device=device, status="active").count() == 1


def test_a_quarantined_device_waits_without_credentials_until_approved(tree):
    profile = make_profile(tree["acme"])
    policy = claim_policy(tree["acme"], profile, first_contact="quarantine")
    token = claim_token(policy, max_uses=1)
    key = new_key()
    first = enroll(body("SN-Q", token=token, key=key))
    device = Device.objects.get(serial="SN-Q")
    assert first.status_code == 202, first.content
    assert first.json() == {
        "device_id": str(device.pk),
        "state": "discovered",
        "organization_id": str(tree["acme"].pk),
        "retry_after": 60,
    }
    assert first["Retry-After"] == "60"
    assert device.state == DeviceState.DISCOVERED
    assert not DeviceCertificate.objects.filter(device=device).exists()
    assert Event.objects.filter(type="device.discovered", subject_id=str(device.pk)).count() == 1
    polled = enroll(body("SN-Q", token=token, key=key, common_name=str(device.pk)))
    assert (polled.status_code, polled.json()["state"]) == (202, "discovered")
    services.device_transition(actor=SYSTEM, device=device, transition="approve")
    approved = enroll(body("SN-Q", token=token, key=key))
    assert approved.status_code == 200, approved.content
    assert approved.json()["state"] == "active"
    assert common_name(approved.json()["certificate"]) == str(device.pk)
    # one use for the device, though it asked three times (the token allowed one)
    assert ClaimToken.objects.get(policy=policy).uses == 1
    assert enroll_audit() == [
        ("device.enroll", "quarantined", None, str(device.pk)),
        ("device.enroll", "pending", None, str(device.pk)),
        ("device.enroll", "enrolled", None, str(device.pk)),
    ]


def test_an_enrolled_device_cannot_enroll_again_with_just_a_claim_token(tree, acme_batch):
    _, policy, token = acme_batch
    first = enroll(body("SN-4", token=token, key=new_key()))
    device = Device.objects.get(serial="SN-4")
    again = enroll(body("SN-4", token=token, key=new_key()))
    assert again.status_code == 403
    assert again.json()["error"]["code"] == "already_enrolled"
    assert "revoke its credentials" in again.json()["error"]["message"]
    assert ClaimToken.objects.get(policy=policy).uses == 1
    # an operator revokes its credentials: the claim token enrolls it again, same identity
    credential_services.device_credentials_revoke(
        actor=SYSTEM, device=device, reason="key_compromise"
    )
    third = enroll(body("SN-4", token=token, key=new_key(), common_name=str(device.pk)))
    assert third.status_code == 200, third.content
    assert third.json()["device_id"] == first.json()["device_id"]
    statuses = list(
        DeviceCertificate.objects.filter(device=device)
        .order_by("id")
        .values_list("status", flat=True)
    )
    assert statuses == ["revoked", "active"]
    assert ClaimToken.objects.get(policy=policy).uses == 2
    refused = AuditLog.objects.get(action="device.enroll_refused")
    assert (refused.object_id, refused.changes["reason"], refused.changes["status"]) == (
        str(device.pk),
        "already_enrolled",
        403,
    )


def test_a_retry_with_the_same_key_gets_the_same_certificate_and_spends_nothing(acme_batch):
    _, policy, token = acme_batch
    key = new_key()
    first = enroll(body("SN-5", token=token, key=key))
    retry = enroll(body("SN-5", token=token, key=key))
    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json()["certificate"] == first.json()["certificate"]
    assert ClaimToken.objects.get(policy=policy).uses == 1
    assert DeviceCertificate.objects.count() == 1
    assert [row[1] for row in enroll_audit()] == ["registered", "repeated"]


@pytest.mark.parametrize("state", ["suspended", "decommissioned", "replaced"])
def test_a_suspended_or_retired_device_is_refused(tree, acme_batch, state):
    profile, _, token = acme_batch
    device = make_device(
        tree["retail"], ProfileVersion.objects.get(profile=profile), "SN-6", state=state
    )
    response = enroll(body("SN-6", token=token, key=new_key()))
    assert response.status_code == 403
    assert response.json()["error"] == {
        "status": 403,
        "code": "device_refused",
        "message": f"The device is {state}; it cannot enroll.",
        "request_id": response["X-Request-ID"],
    }
    assert Device.objects.get(pk=device.pk).state == state
    assert ClaimToken.objects.get().uses == 0


def test_a_device_of_another_organization_is_not_taken_over(tree):
    profile = make_profile(tree["acme"])
    make_device(tree["hospital"], ProfileVersion.objects.get(profile=profile), "SN-7")
    token = claim_token(claim_policy(tree["retail"], profile))
    response = enroll(body("SN-7", token=token, key=new_key()))
    assert (response.status_code, response.json()["error"]["code"]) == (403, "device_elsewhere")
    assert Device.objects.get(serial="SN-7").organization == tree["hospital"]


def test_a_token_credential_is_issued_when_the_policy_allows_it(tree):
    profile = make_profile(tree["acme"])
    allowed = claim_token(claim_policy(tree["acme"], profile, allow_token_credentials=True))
    response = enroll(body("SN-T", token=allowed, credential="token"))
    assert response.status_code == 201, response.content
    data = response.json()
    device = Device.objects.get(serial="SN-T")
    row = DeviceToken.objects.get(device=device)
    assert data["token"].startswith(f"fo_dev_{row.prefix}_")
    assert (data["certificate"], data["certificate_chain"], data["expires_at"]) == (
        None,
        None,
        None,
    )
    assert data["ca_certificate"] == authorities.root_certificate_pem()
    assert credential_services.authenticate_token(data["token"]) == row
    refused_policy = claim_policy(tree["acme"], make_profile(tree["acme"], "meter"))
    refused = enroll(body("SN-U", token=claim_token(refused_policy), credential="token"))
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {
        "credential": ["This enrollment policy does not allow token credentials."]
    }


def test_a_policy_without_a_profile_takes_the_profile_the_device_names(tree):
    make_profile(tree["acme"], "sensor")
    meter = make_profile(tree["acme"], "meter")
    token = claim_token(claim_policy(tree["acme"], None))
    missing = enroll(body("SN-8", token=token, key=new_key()))
    assert missing.status_code == 400
    assert missing.json()["error"]["fields"] == {
        "profile": ["Required: this enrollment policy names no profile."]
    }
    named = enroll(body("SN-8", token=token, key=new_key(), profile="meter"))
    assert named.status_code == 201, named.content
    assert Device.objects.get(serial="SN-8").profile_version.profile == meter
    unknown = enroll(body("SN-9", token=token, key=new_key(), profile="toaster"))
    assert unknown.json()["error"]["fields"] == {
        "profile": ["Unknown profile for this enrollment policy."]
    }


def test_inventory_and_hardware_revision_are_recorded(tree, acme_batch):
    _, _, token = acme_batch
    data = body(
        "SN-10",
        token=token,
        key=new_key(),
        hardware_revision="rev-b",
        inventory={"firmware_version": "1.4.2", "modem": "BG96"},
    )
    assert enroll(data).status_code == 201
    device = Device.objects.get(serial="SN-10")
    assert device.inventory == {
        "firmware_version": "1.4.2",
        "modem": "BG96",
        "hardware_revision": "rev-b",
    }
    assert device.firmware_version == "1.4.2"


def test_the_outcomes_are_counted(acme_batch):
    _, _, token = acme_batch
    before = enrollment_guard.counts(["registered", "bad_claim_token"])
    enroll(body("SN-11", token=token, key=new_key()))
    enroll(body("SN-12", token=token + "x", key=new_key()))
    after = enrollment_guard.counts(["registered", "bad_claim_token"])
    assert after == {
        "registered": before["registered"] + 1,
        "bad_claim_token": before["bad_claim_token"] + 1,
    }


def test_a_pending_transfer_keeps_an_escrow_device_in_escrow(tree, acme_batch):
    from apps.devices import transfers

    profile, _, token = acme_batch
    version = ProfileVersion.objects.get(profile=profile)
    device = services.device_register(
        actor=SYSTEM, organization=tree["acme"], profile_version=version, serial="SN-13"
    )
    transfers.transfer_create(actor=SYSTEM, device=device, to_organization=tree["retail"])
    response = enroll(body("SN-13", token=token, key=new_key()))
    assert (response.status_code, response.json()["state"]) == (200, "escrow")


def test_claim_token_policy_must_be_enabled(tree, acme_batch):
    _, policy, token = acme_batch
    enrollment_policies.policy_update(actor=SYSTEM, policy=policy, enabled=False)
    response = enroll(body("SN-14", token=token, key=new_key()))
    assert (response.status_code, response.json()["error"]["code"]) == (401, "policy_disabled")
    assert not Device.objects.filter(serial="SN-14").exists()


def test_expired_tokens_are_refused(acme_batch):
    _, policy, token = acme_batch
    ClaimToken.objects.filter(policy=policy).update(expires_at=timezone.now())
    response = enroll(body("SN-15", token=token, key=new_key()))
    assert (response.status_code, response.json()["error"]["code"]) == (401, "claim_token_expired")
