"""A real Mosquitto for tests, configured by ``apps.devices.broker`` from the test database's PKI,
and paho-mqtt clients that connect to it as a device (certificate or token) or as the platform.

The fixture ``mqtt_broker`` (registered in ``tests/conftest.py``) hands every test the one
broker the session started on free ports (``mqtt_broker_process``), and clears the retained
``devices/...`` messages after each test. Test databases are flushed or rolled back between
tests, so the installation root comes from files generated once per session
(``PKI_ROOT_CERT_FILE``/``PKI_ROOT_KEY_FILE``): every test's database re-imports the same root,
and the broker's ``ca.pem`` stays valid. Intermediates are per test; call
``mqtt_broker.sync()`` after issuing certificates or tokens (the broker must have every issuing
CA's CRL before that CA's devices can connect).
"""

from __future__ import annotations

import hashlib
import queue
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.db import transaction
from django.test.utils import override_settings
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from apps.devices import broker as broker_files
from apps.devices.models import Device
from apps.devices.models_pki import DeviceCertificate, DeviceToken
from apps.devices.pki import authorities, certs, issuance, keys, revocation

HOST = "127.0.0.1"
TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(found).exists():
        pytest.fail("mosquitto is not installed (apt-get install mosquitto)")
    return found


def write_root_ca(directory: Path) -> tuple[Path, Path]:
    """A root CA as PEM files (certificate, unencrypted key), the way an operator configures one."""
    key = keys.generate()
    subject = certs.name("Fleetops test root CA", "Fleetops tests")
    certificate = authorities.ca_certificate(
        subject, key.public_key(), subject, key, 3650, path_length=1
    )
    cert_file, key_file = directory / "root.pem", directory / "root.key"
    cert_file.write_text(certs.to_pem(certificate))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class MqttBroker:
    """A running Mosquitto with the platform's generated configuration."""

    directory: Path
    device_port: int
    token_port: int
    platform_port: int
    platform_username: str
    platform_password: str
    host: str = HOST
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_file(self) -> Path:
        return self.directory / "mosquitto.conf"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_pem(self) -> str:
        return self.ca_file.read_text()

    @property
    def log_file(self) -> Path:
        return self.directory / "mosquitto.log"

    @property
    def pid_file(self) -> Path:
        return self.directory / "mosquitto.pid"

    def write_config(self) -> None:
        broker_files.write_config(
            self.directory,
            device_port=self.device_port,
            token_port=self.token_port,
            platform_port=self.platform_port,
            platform_host=self.host,
            platform_username=self.platform_username,
            platform_password=self.platform_password,
            data_dir=self.directory / "data",
            log_file=self.log_file,
            pid_file=self.pid_file,
            device_host=self.host,
        )

    def start(self) -> None:
        output = (self.directory / "mosquitto.out").open("ab")
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config_file)],
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
        for port in (self.device_port, self.token_port, self.platform_port):
            self._wait_for_port(port)

    def stop(self) -> None:
        """SIGTERM by PID (Mosquitto saves its persistence file on the way out)."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def sync(self) -> bool:
        """Rewrite the CRL and the token password file from the current (test) database, send
        SIGHUP and wait until Mosquitto has reloaded them."""
        changed = broker_files.sync(self.directory, force=True)
        before = self.reload_count()
        assert self.process is not None, "the broker is not running"
        broker_files.reload(self.pid_file)
        deadline = time.monotonic() + TIMEOUT
        # Mosquitto reloads in its single-threaded main loop right after logging this line, so
        # any connection attempted once the line is there meets the new files.
        while self.reload_count() == before:
            if time.monotonic() > deadline:
                pytest.fail(f"mosquitto did not reload in {TIMEOUT}s (see {self.log_file})")
            time.sleep(0.02)
        return changed

    def clear_retained(self) -> None:
        """Delete every retained message under ``devices/`` (publish an empty retained one)."""
        session = connect_platform(self, client_id=f"cleaner-{secrets.token_hex(4)}")
        try:
            session.subscribe("devices/#")
            marker = f"devices/{secrets.token_hex(8)}/cleanup"
            session.publish(marker, b"done")  # retained messages arrive before it
            retained = {m.topic for m in session.until(marker, b"done") if m.retain and m.payload}
            for topic in sorted(retained):
                session.publish(topic, b"", retain=True)
        finally:
            session.close()

    def reload_count(self) -> int:
        if not self.log_file.exists():
            return 0
        return self.log_file.read_text(errors="replace").count("Reloading config.")

    def _wait_for_port(self, port: int) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            try:
                with socket.create_connection((self.host, port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"mosquitto did not open port {port} (see {self.directory})")


@pytest.fixture(scope="session")
def mqtt_broker_process(
    tmp_path_factory: pytest.TempPathFactory, django_db_setup: Any, django_db_blocker: Any
) -> Iterator[MqttBroker]:
    """One Mosquitto per test session, configured exactly as in production, on free ports."""
    directory = tmp_path_factory.mktemp("mosquitto")
    cert_file, key_file = write_root_ca(directory)
    overrides = override_settings(
        PKI_ROOT_CERT_FILE=str(cert_file),
        PKI_ROOT_KEY_FILE=str(key_file),
        PKI_ROOT_KEY_PASSPHRASE="",
    )
    overrides.enable()
    running = MqttBroker(
        directory=directory / "broker",
        device_port=free_port(),
        token_port=free_port(),
        platform_port=free_port(),
        platform_username="fleetops-tests",
        platform_password=secrets.token_urlsafe(24),
    )
    with django_db_blocker.unblock(), transaction.atomic():
        running.write_config()  # reads and writes the database only to build the files...
        transaction.set_rollback(True)  # ...and leaves nothing behind for the tests
    running.start()
    try:
        yield running
    finally:
        running.stop()
        overrides.disable()


@pytest.fixture
def mqtt_broker(mqtt_broker_process: MqttBroker) -> Iterator[MqttBroker]:
    """The session's broker (``mqtt_broker_process``), handed to one test and tidied after it:
    running again if the test stopped it, and without retained ``devices/...`` messages, so no
    test sees another's retained status, configuration or job."""
    yield mqtt_broker_process
    if mqtt_broker_process.process is None or mqtt_broker_process.process.poll() is not None:
        mqtt_broker_process.process = None
        mqtt_broker_process.start()
    mqtt_broker_process.clear_retained()


# --- device credentials ------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceCredentials:
    """A device's certificate chain and key as files, the way a device keeps them."""

    device_id: str
    certfile: Path
    keyfile: Path
    certificate: DeviceCertificate


def issue_certificate(device: Device, directory: Path) -> DeviceCredentials:
    """Generate a key "on the device", send a CSR (CN = device UUID) through the platform's
    issuance and store the returned chain next to the key."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(certs.name(str(device.pk)))
        .sign(key, hashes.SHA256())
    )
    row, chain = issuance.issue(device=device, csr=csr)
    directory.mkdir(parents=True, exist_ok=True)
    certfile = directory / f"{device.pk}-{row.serial_number[:12]}.pem"
    keyfile = certfile.with_suffix(".key")
    certfile.write_text(chain)
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return DeviceCredentials(str(device.pk), certfile, keyfile, row)


def create_token(device: Device) -> str:
    """A device token row written directly (a starting state, like ``make_device``): returns the
    secret the device would have been shown once."""
    prefix, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    token = f"fo_dev_{prefix}_{secret}"
    DeviceToken.objects.create(
        device=device,
        prefix=prefix,
        token_hash=hashlib.sha256(token.encode()).hexdigest(),
        broker_hash=keys.broker_password_hash(token),
    )
    revocation.bump_broker_state()
    return token


# --- MQTT clients --------------------------------------------------------------------------------


class ConnectionRefused(Exception):
    """The broker (or the TLS handshake) refused the connection."""


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass
class MqttSession:
    """A connected paho client (its network loop in a thread) that records what it receives."""

    client: mqtt.Client
    messages: queue.Queue[Received] = field(default_factory=queue.Queue)
    answered: threading.Event = field(default_factory=threading.Event)  # CONNACK or closed
    gone: threading.Event = field(default_factory=threading.Event)
    connect_reason: Any = None
    disconnect_reason: Any = None
    _subacks: dict[int, list[int]] = field(default_factory=dict)
    _subscribed: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    @property
    def connected(self) -> bool:
        return self.client.is_connected() and not self.gone.is_set()

    def subscribe(self, topic: str, qos: int = 1) -> list[int]:
        """Subscribe and wait for the SUBACK; returns its reason codes (Mosquitto grants
        subscriptions its ACL forbids: only the delivery is filtered)."""
        result, mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS and mid is not None, result
        with self._subscribed:
            if not self._subscribed.wait_for(lambda: mid in self._subacks, timeout=TIMEOUT):
                raise AssertionError(f"no SUBACK for {topic}")
            return self._subacks.pop(mid)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        """Publish and, for QoS 1, wait until the broker acknowledged it."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            info.wait_for_publish(timeout=TIMEOUT)
            assert info.is_published(), f"no PUBACK for {topic}"

    def collect(self, seconds: float) -> list[Received]:
        """Everything received within ``seconds`` from now (and not read before)."""
        deadline = time.monotonic() + seconds
        found: list[Received] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                found.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return found

    def expect(self, count: int) -> list[Received]:
        """Wait for exactly the next ``count`` messages."""
        found: list[Received] = []
        deadline = time.monotonic() + TIMEOUT
        while len(found) < count and (left := deadline - time.monotonic()) > 0:
            try:
                found.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return found

    def until(self, topic: str, payload: bytes) -> list[Received]:
        """Everything received up to and including the first ``topic``/``payload`` message.
        A broker delivers one session's messages in order, so a control message sent after the
        forbidden ones proves that nothing forbidden was delivered before it."""
        found: list[Received] = []
        deadline = time.monotonic() + TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                found.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
            if found[-1].topic == topic and found[-1].payload == payload:
                return found
        raise AssertionError(f"{topic} {payload!r} never arrived; got {found}")

    def wait_gone(self, timeout: float = TIMEOUT) -> bool:
        return self.gone.wait(timeout)

    def close(self) -> None:
        if self.connected:
            self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self.connect_reason = reason
        self.answered.set()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.disconnect_reason = reason
        self.gone.set()
        self.answered.set()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put(
            Received(message.topic, bytes(message.payload), message.qos, message.retain)
        )

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        with self._subscribed:
            self._subacks[mid] = [code.value for code in codes]
            self._subscribed.notify_all()


def connect(
    broker: MqttBroker,
    *,
    port: int,
    client_id: str = "",
    username: str | None = None,
    password: str | None = None,
    certfile: Path | None = None,
    keyfile: Path | None = None,
    ca_file: Path | None = None,
    tls: bool = True,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
    clean: bool = True,
    will: tuple[str, bytes, int, bool] | None = None,
) -> MqttSession:
    """Connect and wait for the CONNACK; ConnectionRefused when the broker says no or the TLS
    handshake fails (with TLS 1.3 a rejected client certificate surfaces after the handshake,
    as a closed connection instead of a CONNACK)."""
    v5 = protocol == MQTTProtocolVersion.MQTTv5
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=protocol,
        clean_session=None if v5 else clean,
        reconnect_on_failure=False,
    )
    if tls:
        client.tls_set(
            ca_certs=str(ca_file or broker.ca_file),
            certfile=str(certfile) if certfile else None,
            keyfile=str(keyfile) if keyfile else None,
        )
    if username is not None:
        client.username_pw_set(username, password)
    if will is not None:
        client.will_set(*will)
    session = MqttSession(client)
    try:
        if v5:
            client.connect(broker.host, port, keepalive=30, clean_start=clean)
        else:
            client.connect(broker.host, port, keepalive=30)
    except (OSError, ssl.SSLError) as error:
        raise ConnectionRefused(f"{type(error).__name__}: {error}") from error
    client.loop_start()
    answered = session.answered.wait(TIMEOUT)
    if not answered or session.gone.is_set() or session.connect_reason.is_failure:
        reason = session.connect_reason or session.disconnect_reason
        session.close()
        raise ConnectionRefused(f"refused: {reason}")
    return session


def connect_device(
    broker: MqttBroker, credentials: DeviceCredentials, **options: Any
) -> MqttSession:
    """A device on the mTLS listener (client id = its UUID unless ``client_id`` is given)."""
    options.setdefault("client_id", credentials.device_id)
    return connect(
        broker,
        port=broker.device_port,
        certfile=credentials.certfile,
        keyfile=credentials.keyfile,
        **options,
    )


def connect_token(broker: MqttBroker, device_id: str, token: str, **options: Any) -> MqttSession:
    """A device on the token listener: username = its UUID, password = its token."""
    options.setdefault("client_id", device_id)
    return connect(broker, port=broker.token_port, username=device_id, password=token, **options)


def connect_platform(broker: MqttBroker, **options: Any) -> MqttSession:
    """The platform account on its own (plain, loopback) listener."""
    options.setdefault("client_id", f"platform-{secrets.token_hex(4)}")
    return connect(
        broker,
        port=broker.platform_port,
        username=broker.platform_username,
        password=broker.platform_password,
        tls=False,
        **options,
    )
