"""Bad enrollment attempts: refused with the right status, code and field, changing nothing,
yet each audited (in its own transaction) and counted."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings

from apps.core.actors import SYSTEM
from apps.core.models import AuditLog
from apps.devices import enrollment_guard, enrollment_policies
from apps.devices.models import ClaimToken, Device, DeviceCertificate

from .support import (
    body,
    claim_policy,
    claim_token,
    enroll,
    make_profile,
    new_key,
    now_iso,
    weak_rsa_csr,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(tree) -> str:
    return claim_token(
        claim_policy(tree["acme"], make_profile(tree["acme"]), name="Batch"), max_uses=2
    )


def refusals() -> list[tuple[str, int, str]]:
    return list(
        AuditLog.objects.filter(action="device.enroll_refused")
        .order_by("created_at", "id")
        .values_list("changes__reason", "changes__status", "changes__field")
    )


def assert_refused(response, status: int, code: str, fields: dict | None = None) -> None:
    error = response.json()["error"]
    assert (response.status_code, error["status"], error["code"]) == (status, status, code), error
    if fields is not None:
        assert error["fields"] == fields
    assert not Device.objects.exists()
    assert not DeviceCertificate.objects.exists()


def test_a_claim_token_with_a_wrong_secret_is_refused_and_audited(token):
    response = enroll(body("SN-1", token=token[:-4] + "AAAA", key=new_key()))
    assert_refused(
        response, 401, "bad_claim_token", {"claim_token": ["The claim token is not valid."]}
    )
    row = AuditLog.objects.get(action="device.enroll_refused")
    prefix = token.split("_")[2]
    assert (row.actor_kind, row.source, row.organization_id, row.object_repr) == (
        "device",
        "device",
        None,
        "SN-1",
    )
    assert row.changes == {
        "serial": "SN-1",
        "source_address": "127.0.0.1",
        "method": "claim_token",
        "policy": None,
        "credential": "certificate",
        "claim_token": prefix,
        "outcome": "refused",
        "reason": "bad_claim_token",
        "status": 401,
        "message": "The claim token is not valid.",
        "field": "claim_token",
    }
    assert token not in str(row.changes)


@pytest.mark.parametrize("value", ["fo_claim_short_x", "not-a-token", "fo_api_123456789012_x"])
def test_malformed_claim_tokens_are_refused(token, value):
    assert_refused(enroll(body("SN-1", token=value, key=new_key())), 401, "bad_claim_token")


def test_a_revoked_claim_token_is_refused(tree, token):
    enrollment_policies.claim_token_revoke(actor=SYSTEM, claim_token=ClaimToken.objects.get())
    assert_refused(enroll(body("SN-1", token=token, key=new_key())), 401, "claim_token_revoked")


def test_a_used_up_claim_token_is_refused(token):
    assert enroll(body("SN-1", token=token, key=new_key())).status_code == 201
    assert enroll(body("SN-2", token=token, key=new_key())).status_code == 201
    response = enroll(body("SN-3", token=token, key=new_key()))
    assert (response.status_code, response.json()["error"]["code"]) == (401, "claim_token_used_up")
    assert sorted(Device.objects.values_list("serial", flat=True)) == ["SN-1", "SN-2"]
    assert ClaimToken.objects.get().uses == 2
    assert refusals() == [("claim_token_used_up", 401, "claim_token")]


def test_a_csr_with_the_wrong_common_name_is_refused(token):
    response = enroll(body("SN-1", token=token, key=new_key(), common_name="SN-2"))
    assert_refused(
        response, 400, "invalid", {"csr": ["The request's CN must be 'SN-1' (it is 'SN-2')."]}
    )
    assert ClaimToken.objects.get().uses == 0
    assert refusals() == [("invalid_csr", 400, "csr")]


def test_a_csr_with_a_weak_key_is_refused(token):
    data = body("SN-1", token=token, csr=weak_rsa_csr("SN-1"))
    assert_refused(
        enroll(data),
        400,
        "invalid",
        {"csr": ["Weak key: RSA keys must have at least 2048 bits (this one has 1024)."]},
    )
    assert refusals() == [("invalid_csr", 400, "csr")]


def test_a_replayed_nonce_is_refused(token):
    data = body("SN-1", token=token, key=new_key())
    assert enroll(data).status_code == 201
    replay = enroll(data)
    assert replay.status_code == 409
    assert replay.json()["error"]["code"] == "replayed_nonce"
    assert replay.json()["error"]["fields"] == {
        "nonce": ["This nonce was already used; every attempt needs a new one."]
    }
    assert Device.objects.count() == 1
    assert ClaimToken.objects.get().uses == 1
    assert refusals() == [("replayed_nonce", 409, "nonce")]


@pytest.mark.parametrize("offset", [dt.timedelta(minutes=-6), dt.timedelta(minutes=6)])
def test_a_stale_timestamp_is_refused(token, offset):
    data = body("SN-1", token=token, key=new_key(), timestamp=now_iso(offset))
    response = enroll(data)
    assert_refused(response, 409, "stale_timestamp")
    assert response.json()["error"]["message"].startswith(
        "The timestamp is more than 5 minutes away from the server's clock"
    )


def test_a_timestamp_that_is_no_time_is_invalid(token):
    response = enroll(body("SN-1", token=token, key=new_key(), timestamp="2026-13-01T00:00:00Z"))
    assert response.json()["error"]["fields"] == {
        "timestamp": ["An ISO 8601 time with its offset, e.g. ...Z."]
    }


def test_a_timestamp_within_the_window_is_accepted(token):
    data = body("SN-1", token=token, key=new_key(), timestamp=now_iso(dt.timedelta(minutes=-4)))
    assert enroll(data).status_code == 201


def test_invalid_input_names_the_field_and_is_audited(token):
    response = enroll(
        {"serial": "SN-1", "nonce": "short", "timestamp": "yesterday", "claim_token": token}
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {
        "nonce": ["16 to 64 characters of A-Z a-z 0-9 + / = _ . -"],
        "timestamp": ["An ISO 8601 time with its offset, e.g. ...Z."],
    }
    assert refusals() == [("invalid_nonce", 400, "nonce")]
    neither = enroll(body("SN-1", key=new_key()))
    assert neither.json()["error"]["fields"] == {
        "claim_token": ["Send either a claim_token or a factory_certificate."]
    }
    no_csr = enroll(body("SN-1", token=token))
    assert no_csr.json()["error"]["fields"] == {"csr": ["Required: a PEM certificate request."]}


def test_a_body_that_is_not_json_is_refused_and_audited(token):
    from rest_framework.test import APIClient

    response = APIClient().post("/device/v1/enroll", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert refusals() == [("invalid_request", 400, "")]


@override_settings(ENROLL_RATE_PER_SOURCE=2)
def test_attempts_are_rate_limited_per_source_address(token):
    meta = {"REMOTE_ADDR": "192.0.2.10"}
    first = enroll(body("SN-1", token=token, key=new_key()), **meta)
    second = enroll(body("SN-2", token="fo_claim_000000000000_x", key=new_key()), **meta)
    third = enroll(body("SN-3", token=token, key=new_key()), **meta)
    fourth = enroll(body("SN-4", token=token, key=new_key()), **meta)
    other = enroll(body("SN-5", token=token, key=new_key()), REMOTE_ADDR="192.0.2.11")
    assert [r.status_code for r in (first, second, third, fourth, other)] == [
        201,
        401,
        429,
        429,
        201,
    ]
    retry_after = int(third["Retry-After"])
    assert 1 <= retry_after <= 60
    assert third.json()["error"]["code"] == "rate_limited"
    # a flood is counted, but only its first refusal of the window is audited
    assert refusals() == [
        ("bad_claim_token", 401, "claim_token"),
        ("rate_limited_source", 429, ""),
    ]
    assert enrollment_guard.counts(["rate_limited_source"])["rate_limited_source"] >= 2


@override_settings(ENROLL_RATE_PER_TOKEN=2)
def test_attempts_are_rate_limited_per_claim_token(token):
    statuses = [
        enroll(
            body(f"SN-{n}", token=token, key=new_key()), REMOTE_ADDR=f"198.51.100.{n}"
        ).status_code
        for n in range(3)
    ]
    assert statuses == [201, 201, 429]
    # guessing secrets under the same prefix counts against the same token
    guess = token.rsplit("_", 1)[0] + "_guess"
    assert (
        enroll(body("SN-9", token=guess, key=new_key()), REMOTE_ADDR="198.51.100.9").status_code
        == 429
    )


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_source(token):
    with override_settings(ENROLL_RATE_PER_SOURCE=1):
        meta = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.5, 127.0.0.1"}
        assert enroll(body("SN-1", token=token, key=new_key()), **meta).status_code == 201
        assert enroll(body("SN-2", token=token, key=new_key()), **meta).status_code == 429
        other = {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.6"}
        assert enroll(body("SN-2", token=token, key=new_key()), **other).status_code == 201
    # from an untrusted address the header is whatever the client wrote: ignored
    assert enrollment_guard.source_address("192.0.2.1", "203.0.113.5") == "192.0.2.1"
    audit = AuditLog.objects.filter(action="device.enroll").order_by("created_at", "id")
    assert [row.changes["source_address"] for row in audit] == ["203.0.113.5", "203.0.113.6"]
