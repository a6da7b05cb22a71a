"""Credentials the broker refuses: a wrong token, a certificate from a CA the platform does not
know, no certificate at all, and revoked certificates and tokens once ``broker_sync`` has
published the revocation (until then the broker still accepts them; sessions already open stay).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from apps.core.actors import SYSTEM
from apps.devices import services
from apps.devices.choices import CredentialStatus
from apps.devices.models_pki import DeviceToken
from apps.devices.pki import authorities, certs, keys, revocation
from tests.broker_support import (
    ConnectionRefused,
    MqttBroker,
    connect,
    connect_device,
    connect_token,
    issue_certificate,
)
from tests.devices.registry_support import make_device, make_version
from tests.factories import make_organization

from .conftest import Fleet


def test_a_wrong_token_another_devices_username_or_no_password_is_refused(fleet: Fleet) -> None:
    broker, t = fleet.broker, str(fleet.t.pk)
    with pytest.raises(ConnectionRefused, match="Not authorized"):
        connect_token(broker, t, fleet.t_token[:-1] + "x")
    with pytest.raises(ConnectionRefused, match="Not authorized"):
        connect_token(broker, str(fleet.a.pk), fleet.t_token)
    with pytest.raises(ConnectionRefused, match="Not authorized"):
        connect(broker, port=broker.token_port, client_id=t)
    assert fleet.device("t").connected  # the right token still works


def test_a_certificate_from_an_unknown_ca_is_refused(fleet: Fleet, tmp_path: Path) -> None:
    certfile, keyfile = rogue_certificate(str(fleet.a.pk), tmp_path)
    with pytest.raises(ConnectionRefused):
        connect(
            fleet.broker,
            port=fleet.broker.device_port,
            certfile=certfile,
            keyfile=keyfile,
            client_id=str(fleet.a.pk),
        )
    assert fleet.device("a").connected  # A's real certificate still works


def test_the_device_listener_wants_a_client_certificate_not_a_token(fleet: Fleet) -> None:
    broker = fleet.broker
    with pytest.raises(ConnectionRefused):
        connect(broker, port=broker.device_port, client_id=str(fleet.a.pk))
    with pytest.raises(ConnectionRefused):
        connect(
            broker,
            port=broker.device_port,
            client_id=str(fleet.t.pk),
            username=str(fleet.t.pk),
            password=fleet.t_token,
        )


def test_a_revoked_certificate_is_refused_once_the_broker_has_synced(fleet: Fleet) -> None:
    revocation.revoke_certificate(fleet.a_credentials.certificate, "key_compromise")
    before = fleet.device("a")  # the broker has not reloaded its CRL yet
    assert before.connected
    before.close()

    fleet.broker.sync()

    with pytest.raises(ConnectionRefused):
        connect_device(fleet.broker, fleet.a_credentials)
    assert fleet.device("b").connected  # same issuing CA, not revoked
    serials = revoked_serials(fleet.broker)
    assert serials == {int(fleet.a_credentials.certificate.serial_number, 16)}


def test_a_revoked_token_is_refused_once_the_broker_has_synced(fleet: Fleet) -> None:
    revocation.revoke_for_devices([fleet.t.pk], "key_compromise")
    before = fleet.device("t")
    assert before.connected
    before.close()

    fleet.broker.sync()

    with pytest.raises(ConnectionRefused, match="Not authorized"):
        connect_token(fleet.broker, str(fleet.t.pk), fleet.t_token)


def test_decommissioning_refuses_the_devices_certificate_and_token(fleet: Fleet) -> None:
    for device in (fleet.a, fleet.t):
        services.device_transition(actor=SYSTEM, device=device, transition="decommission")
    fleet.a_credentials.certificate.refresh_from_db()
    assert fleet.a_credentials.certificate.status == CredentialStatus.REVOKED
    assert DeviceToken.objects.get(device=fleet.t).revoked_at is not None

    fleet.broker.sync()

    with pytest.raises(ConnectionRefused):
        connect_device(fleet.broker, fleet.a_credentials)
    with pytest.raises(ConnectionRefused, match="Not authorized"):
        connect_token(fleet.broker, str(fleet.t.pk), fleet.t_token)
    assert fleet.device("b").connected


def test_a_new_organizations_devices_connect_once_the_sync_published_its_cas_crl(
    fleet: Fleet, tmp_path: Path
) -> None:
    globex = make_organization("Globex")
    device = make_device(globex, make_version(globex, "probe"), "G-1", state="active")
    credentials = issue_certificate(device, tmp_path)  # creates Globex's intermediate CA
    # The broker checks the issuer's CRL (X509_V_FLAG_CRL_CHECK): none for this CA yet.
    with pytest.raises(ConnectionRefused):
        connect_device(fleet.broker, credentials)

    fleet.broker.sync()

    session = connect_device(fleet.broker, credentials)
    assert session.connected
    session.close()


# --- helpers -----------------------------------------------------------------------------------


def rogue_certificate(common_name: str, directory: Path) -> tuple[Path, Path]:
    """A certificate with the right CN, signed by a CA the platform never registered."""
    ca_key = keys.generate()
    subject = certs.name("Rogue CA", "Not Fleetops")
    ca = authorities.ca_certificate(subject, ca_key.public_key(), subject, ca_key, 30)
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(certs.name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(ca.not_valid_before_utc)
        .not_valid_after(ca.not_valid_after_utc)
        .sign(ca_key, hashes.SHA256())
    )
    certfile, keyfile = directory / "rogue.pem", directory / "rogue.key"
    certfile.write_text(certs.to_pem(leaf) + certs.to_pem(ca))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certfile, keyfile


def revoked_serials(broker: MqttBroker) -> set[int]:
    """Serial numbers listed in the broker's crl.pem (every CRL in the bundle)."""
    marker = "-----BEGIN X509 CRL-----"
    text = (broker.directory / "crl.pem").read_text()
    serials: set[int] = set()
    for part in text.split(marker)[1:]:
        crl = x509.load_pem_x509_crl((marker + part).encode())
        serials |= {entry.serial_number for entry in crl}
    return serials
