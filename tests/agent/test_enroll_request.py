"""What the agent sends to ``POST /device/v1/enroll`` and what it accepts back (no server)."""

from __future__ import annotations

import base64
import hashlib
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent import keys
from agent.enroll import Enrollment, EnrollmentError, Proof, enrollment_body, install
from agent.state import StateDir

URL = "https://fleet.example.com"


def common_name_of(csr_pem: str) -> str:
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    return str(csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def test_the_first_request_carries_a_csr_for_the_serial_a_fresh_nonce_and_the_time(
    tmp_path: Path,
) -> None:
    state = StateDir(tmp_path / "device")
    request = Enrollment(url=URL, serial="SN-1", proof=Proof(claim_token="fo_claim_a_b"))
    key = state.pending_key()

    first = enrollment_body(state, request, key)
    second = enrollment_body(state, request, key)

    assert sorted(first) == ["claim_token", "credential", "csr", "nonce", "serial", "timestamp"]
    assert (first["serial"], first["claim_token"], first["credential"]) == (
        "SN-1",
        "fo_claim_a_b",
        "certificate",
    )
    assert common_name_of(first["csr"]) == "SN-1"
    assert re.fullmatch(r"[0-9a-f]{32}", first["nonce"])
    assert first["nonce"] != second["nonce"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["timestamp"])
    assert stat.S_IMODE((state.path / "pending.key").stat().st_mode) == 0o600
    assert keys.key_pem(StateDir(state.path).pending_key()) == keys.key_pem(key)


def test_once_the_platform_named_the_device_the_csr_carries_its_id(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "device")
    state.save_pending({"device_id": "01a2-id", "state": "discovered"})
    request = Enrollment(url=URL, serial="SN-1", proof=Proof(claim_token="fo_claim_a_b"))

    body = enrollment_body(state, request, state.pending_key())

    assert common_name_of(body["csr"]) == "01a2-id"


def test_a_factory_key_signs_serial_nonce_time_and_the_csr_digest(tmp_path: Path) -> None:
    factory_key = ec.generate_private_key(ec.SECP256R1())
    proof = Proof(factory_certificate="-----BEGIN CERTIFICATE-----...", factory_key=factory_key)
    request = Enrollment(url=URL, serial="SN-F", proof=proof, profile="sensor")
    state = StateDir(tmp_path / "device")

    body = enrollment_body(state, request, state.pending_key())

    assert "claim_token" not in body
    assert body["profile"] == "sensor"
    assert body["factory_certificate"] == "-----BEGIN CERTIFICATE-----..."
    digest = hashlib.sha256(body["csr"].encode()).hexdigest()
    signed = f"fleetops-enroll:v1:SN-F:{body['nonce']}:{body['timestamp']}:{digest}".encode()
    signature = base64.b64decode(body["factory_signature"])
    factory_key.public_key().verify(signature, signed, ec.ECDSA(hashes.SHA256()))


def test_a_token_credential_sends_no_csr_and_signs_the_digest_of_nothing(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "device")
    request = Enrollment(
        url=URL, serial="SN-T", proof=Proof(claim_token="fo_claim_a_b"), credential="token"
    )

    body = enrollment_body(state, request, None)

    assert "csr" not in body
    assert body["credential"] == "token"
    assert not (state.path / "pending.key").exists()


@pytest.mark.parametrize("serial", ["", "S" * 65])
def test_a_serial_that_cannot_be_a_common_name_is_refused_before_sending(serial: str) -> None:
    with pytest.raises(ValueError, match="1 to 64 characters"):
        Enrollment(url=URL, serial=serial, proof=Proof(claim_token="fo_claim_a_b"))


def self_signed(key: ec.EllipticCurvePrivateKey, common_name: str) -> str:
    import datetime as dt

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return keys.certificate_pem(certificate)


def answer(chain: str) -> dict[str, object]:
    return {
        "device_id": "dev-1",
        "state": "active",
        "organization_id": "org-1",
        "certificate": chain,
        "certificate_chain": chain,
        "ca_certificate": "ROOT PEM",
        "broker": {"host": "mqtt.example.com", "port": 8883, "token_port": 8884, "tls": True},
        "topics": {"prefix": "devices/dev-1/"},
        "heartbeat": {"interval_seconds": 30, "missed_beats": 4},
        "configuration": {"sampling": 5},
        "renew_after": "2027-10-31T10:00:00Z",
        "expires_at": "2027-11-30T10:00:00Z",
    }


def test_an_answer_is_installed_with_identity_written_last(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "device")
    key = state.pending_key()
    request = Enrollment(url=URL, serial="SN-1", proof=Proof(claim_token="fo_claim_a_b"))

    identity = install(state, request, answer(self_signed(key, "dev-1")), key)

    assert identity == state.identity()
    assert (identity.device_id, identity.serial, identity.platform_url) == ("dev-1", "SN-1", URL)
    assert (identity.broker.host, identity.broker.port, identity.broker.token_port) == (
        "mqtt.example.com",
        8883,
        8884,
    )
    assert (identity.heartbeat_interval, identity.missed_beats) == (30.0, 4)
    assert identity.topic("telemetry") == "devices/dev-1/telemetry"
    assert state.config() == {"sampling": 5}
    assert state.ca_file.read_text() == "ROOT PEM"
    assert keys.key_pem(keys.load_key(state.credentials_file.read_bytes())) == keys.key_pem(key)
    assert stat.S_IMODE(state.credentials_file.stat().st_mode) == 0o600
    assert not (state.path / "pending.key").exists()


def test_a_certificate_for_another_key_or_another_id_is_not_installed(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "device")
    key = state.pending_key()
    request = Enrollment(url=URL, serial="SN-1", proof=Proof(claim_token="fo_claim_a_b"))
    stranger = ec.generate_private_key(ec.SECP256R1())

    with pytest.raises(EnrollmentError, match="not for this device's key"):
        install(state, request, answer(self_signed(stranger, "dev-1")), key)
    with pytest.raises(EnrollmentError, match="CN is 'dev-2'"):
        install(state, request, answer(self_signed(key, "dev-2")), key)

    assert not state.is_enrolled()
    assert (state.path / "pending.key").exists()  # the next attempt presents the same key
