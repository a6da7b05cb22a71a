"""The HTTPS device API after enrollment: authentication by a client certificate forwarded by a
trusted proxy or by a device token, uploads queued and de-duplicated, configuration by ETag,
certificate renewal."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from apps.core.actors import SYSTEM
from apps.devices import services
from apps.devices.choices import CredentialStatus
from apps.devices.models import Device, DeviceCertificate, UplinkMessage
from apps.devices.pki import authorities
from apps.devices.pki import services as credential_services

from .support import (
    body,
    chain_verifies,
    claim_policy,
    claim_token,
    csr_pem,
    enroll,
    make_profile,
    new_key,
)

pytestmark = pytest.mark.django_db

HEADER = "HTTP_X_SSL_CLIENT_CERT"


@pytest.fixture
def enrolled(tree):
    """An active device enrolled with a certificate, and one enrolled with a token."""
    policy = claim_policy(tree["acme"], make_profile(tree["acme"]), allow_token_credentials=True)
    token = claim_token(policy)
    certificate_pem = enroll(body("SN-C", token=token, key=new_key())).json()["certificate"]
    device_token = enroll(body("SN-T", token=token, credential="token")).json()["token"]
    return {
        "certificate": Device.objects.get(serial="SN-C"),
        "certificate_pem": certificate_pem,
        "token": Device.objects.get(serial="SN-T"),
        "device_token": device_token,
    }


def by_certificate(pem: str, address: str = "127.0.0.1") -> APIClient:
    client = APIClient()
    client.defaults.update({HEADER: quote(pem, safe=""), "REMOTE_ADDR": address})
    return client


def by_token(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def rows(device) -> list[tuple[str, int, int]]:
    return list(
        UplinkMessage.objects.filter(device=device)
        .order_by("kind", "boot", "seq")
        .values_list("kind", "boot", "seq")
    )


def test_a_client_certificate_from_a_trusted_proxy_authenticates_the_device(enrolled):
    device = enrolled["certificate"]
    heartbeat = {"boot": 3, "seq": 42, "ts": "2026-11-30T10:00:00Z", "uptime_s": 60}
    response = by_certificate(enrolled["certificate_pem"]).post(
        "/device/v1/heartbeat", heartbeat, format="json"
    )
    assert (response.status_code, response.json()) == (202, {"accepted": 1})
    message = UplinkMessage.objects.get(device=device)
    assert (message.kind, message.boot, message.seq, message.payload, message.processed_at) == (
        "heartbeat",
        3,
        42,
        heartbeat,
        None,
    )
    device.refresh_from_db()
    assert device.last_seen_at == message.received_at
    certificate = DeviceCertificate.objects.get(device=device)
    assert certificate.last_seen_at is not None


def test_the_certificate_header_from_an_untrusted_address_is_ignored(enrolled):
    client = by_certificate(enrolled["certificate_pem"], address="192.0.2.50")
    response = client.post("/device/v1/heartbeat", {"boot": 1, "seq": 1}, format="json")
    assert response.status_code == 401
    assert response.json()["error"]["status"] == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="fleetops-device"'
    assert not UplinkMessage.objects.exists()


@override_settings(DEVICE_TRUSTED_PROXIES=["10.0.0.0/8"])
def test_trusted_proxies_may_be_networks(enrolled):
    client = by_certificate(enrolled["certificate_pem"], address="10.20.30.40")
    assert client.post("/device/v1/events", {"boot": 1, "seq": 1}, format="json").status_code == 202


def test_a_revoked_certificate_is_refused_and_seen(enrolled):
    device = enrolled["certificate"]
    certificate = DeviceCertificate.objects.get(device=device)
    credential_services.certificate_revoke(
        actor=SYSTEM, certificate=certificate, reason="key_compromise"
    )
    response = by_certificate(enrolled["certificate_pem"]).post(
        "/device/v1/heartbeat", {"boot": 1, "seq": 1}, format="json"
    )
    assert (response.status_code, response.json()["error"]["message"]) == (
        401,
        "The client certificate has been revoked.",
    )
    certificate.refresh_from_db()
    assert certificate.status == CredentialStatus.REVOKED
    assert (
        certificate.last_seen_at is not None and certificate.last_seen_at > certificate.revoked_at
    )


def test_a_certificate_that_is_not_ours_is_refused(enrolled):
    from .support import FactoryCA

    stranger = FactoryCA(enrolled["certificate"].organization).device("X-1").certificate_pem
    response = by_certificate(stranger).get("/device/v1/config")
    assert (response.status_code, response.json()["error"]["message"]) == (
        401,
        "The client certificate is not a device credential here.",
    )
    garbage = by_certificate("not a certificate").get("/device/v1/config")
    assert garbage.status_code == 401


def test_a_device_token_authenticates_and_only_in_the_header(enrolled):
    device = enrolled["token"]
    client = by_token(enrolled["device_token"])
    assert (
        client.post(
            "/device/v1/telemetry", {"boot": 1, "seq": 1, "metrics": {"t": 2}}, format="json"
        ).status_code
        == 202
    )
    assert rows(device) == [("telemetry", 1, 1)]
    in_query = APIClient().get(f"/device/v1/config?token={enrolled['device_token']}")
    assert (in_query.status_code, in_query.json()["error"]["message"]) == (
        401,
        "Device tokens are accepted only in the Authorization header.",
    )
    wrong = by_token(enrolled["device_token"][:-3] + "xyz").get("/device/v1/config")
    assert wrong.status_code == 401


def test_a_suspended_device_is_refused(enrolled):
    device = enrolled["token"]
    services.device_transition(actor=SYSTEM, device=device, transition="suspend")
    response = by_token(enrolled["device_token"]).get("/device/v1/config")
    assert (response.status_code, response.json()["error"]["message"]) == (
        403,
        "The device is suspended.",
    )


def test_anonymous_requests_are_refused_in_the_envelope():
    response = APIClient().post("/device/v1/heartbeat", {"boot": 1, "seq": 1}, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (401, "not_authenticated")
    missing = APIClient().get("/device/v1/nothing-here")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")


def test_uploads_are_queued_once_however_often_they_are_sent(enrolled):
    device = enrolled["token"]
    client = by_token(enrolled["device_token"])
    batch = [
        {"boot": 3, "seq": 41, "samples": [{"ts": "2026-11-30T10:00:00Z", "metrics": {"t": 1}}]},
        {"boot": 3, "seq": 42, "metrics": {"t": 2}},
    ]
    for _ in range(2):
        response = client.post("/device/v1/telemetry", batch, format="json")
        assert (response.status_code, response.json()) == (202, {"accepted": 2})
    again = client.post(
        "/device/v1/telemetry", {"boot": 3, "seq": 42, "metrics": {"t": 9}}, format="json"
    )
    assert again.json() == {"accepted": 1}
    client.post("/device/v1/events", {"boot": 3, "seq": 42, "type": "door_open"}, format="json")
    assert rows(device) == [("events", 3, 42), ("telemetry", 3, 41), ("telemetry", 3, 42)]
    kept = UplinkMessage.objects.get(device=device, kind="telemetry", seq=42)
    assert kept.payload == {"boot": 3, "seq": 42, "metrics": {"t": 2}}  # the first one stays


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"seq": 1}, {"boot": ["Required: a non-negative integer."]}),
        (
            {"boot": -1, "seq": "2"},
            {
                "boot": ["Required: a non-negative integer."],
                "seq": ["Required: a non-negative integer."],
            },
        ),
        (
            {"boot": True, "seq": 1.5},
            {
                "boot": ["Required: a non-negative integer."],
                "seq": ["Required: a non-negative integer."],
            },
        ),
        ([{"boot": 1, "seq": 1}, 7], {"1": ["Must be a JSON object."]}),
        ([], {"non_field_errors": ["Send a JSON object, or a list of them."]}),
    ],
)
def test_bad_uploads_name_the_field(enrolled, payload, fields):
    response = by_token(enrolled["device_token"]).post(
        "/device/v1/telemetry", payload, format="json"
    )
    assert (response.status_code, response.json()["error"]["fields"]) == (400, fields)
    assert not UplinkMessage.objects.exists()


@override_settings(MQTT_MAX_MESSAGE_BYTES=100)
def test_an_oversized_upload_is_refused(enrolled):
    payload = {"boot": 1, "seq": 1, "blob": "x" * 200}
    response = by_token(enrolled["device_token"]).post(
        "/device/v1/telemetry", payload, format="json"
    )
    assert (response.status_code, response.json()["error"]["code"]) == (413, "too_large")
    assert not UplinkMessage.objects.exists()


def test_the_configuration_is_pulled_by_checksum(enrolled):
    device = enrolled["token"]
    client = by_token(enrolled["device_token"])
    first = client.get("/device/v1/config")
    data = first.json()
    assert first.status_code == 200
    assert first["ETag"] == f'"{data["checksum"]}"'
    assert {key: value for key, value in data.items() if key != "checksum"} == {
        "configuration": {},
        "heartbeat": {"interval_seconds": 60, "missed_beats": 3},
        "routing_labels": [],
        "software": {},
    }
    assert len(data["checksum"]) == 64
    same = client.get("/device/v1/config", HTTP_IF_NONE_MATCH=first["ETag"])
    assert (same.status_code, same.content, same["ETag"]) == (304, b"", first["ETag"])
    provisioning = {**device.provisioning, "configuration": {"volume": 3}}
    Device.objects.filter(pk=device.pk).update(provisioning=provisioning)
    changed = client.get("/device/v1/config", HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200
    assert changed.json()["configuration"] == {"volume": 3}
    assert changed["ETag"] != first["ETag"]


def test_a_device_renews_its_certificate(enrolled):
    device = enrolled["certificate"]
    client = by_certificate(enrolled["certificate_pem"])
    response = client.post(
        "/device/v1/certificate/renew", {"csr": csr_pem(new_key(), str(device.pk))}, format="json"
    )
    assert response.status_code == 200, response.content
    data = response.json()
    assert set(data) == {"certificate", "certificate_chain", "expires_at", "renew_after"}
    assert chain_verifies(
        data["certificate"], data["certificate_chain"], authorities.root_certificate_pem()
    )
    statuses = list(
        DeviceCertificate.objects.filter(device=device)
        .order_by("id")
        .values_list("status", flat=True)
    )
    assert statuses == [CredentialStatus.SUPERSEDED, CredentialStatus.ACTIVE]
    # the new certificate authenticates; the superseded one still does until it expires
    assert by_certificate(data["certificate"]).get("/device/v1/config").status_code == 200
    wrong = client.post(
        "/device/v1/certificate/renew", {"csr": csr_pem(new_key(), "SN-C")}, format="json"
    )
    assert wrong.status_code == 400
    assert list(wrong.json()["error"]["fields"]) == ["csr"]


def test_an_upload_costs_the_same_queries_for_one_or_a_hundred_messages(enrolled):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = by_token(enrolled["device_token"])
    client.get("/device/v1/config")  # the token's last use is now recorded: not again this minute

    def queries(count: int, boot: int) -> int:
        batch = [{"boot": boot, "seq": seq, "metrics": {"t": seq}} for seq in range(count)]
        with CaptureQueriesContext(connection) as captured:
            assert client.post("/device/v1/heartbeat", batch, format="json").status_code == 202
        return len(captured)

    assert queries(1, 1) == queries(100, 2) == 5  # token+device, savepoint, insert, update, release
    assert UplinkMessage.objects.count() == 101
