"""The state directory: everything the device must remember across reboots.

::

    identity.json   device id, serial, broker address, heartbeat policy, renewal dates
                    (written last at enrollment: its presence means "enrolled")
    device.pem      0600: the private key followed by the certificate chain (leaf first).
                    One file, so a renewal swaps key and certificate in a single rename.
    ca.pem          the platform's root CA: verifies the broker (and signs our chain)
    token           0600: the device token, for token-credential devices only
    config.json     the initial configuration from provisioning
    desired.json    the last retained ``config/desired`` received
    boot            the boot counter (incremented at every start)
    pending.key     0600: the key of an enrollment still in progress (quarantine)
    pending.json    what a quarantined enrollment answered so far (device id, state)
    commands/       commands received, one file per command id
    outbox/         uplink messages not yet acknowledged by the broker (``outbox``)
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import keys
from .files import make_private_directory, read_json, write_atomic, write_json

DEFAULT_HEARTBEAT_SECONDS = 60.0


class NotEnrolled(Exception):
    """The state directory holds no credentials yet: run ``enroll`` first."""


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    token_port: int | None = None
    tls: bool = True


@dataclass(frozen=True)
class Identity:
    """Who this device is and where it connects (``identity.json``)."""

    device_id: str
    serial: str
    state: str
    organization_id: str
    credential: str  # "certificate" or "token"
    platform_url: str
    broker: BrokerAddress
    topic_prefix: str
    heartbeat_interval: float = DEFAULT_HEARTBEAT_SECONDS
    missed_beats: int = 3
    renew_after: str | None = None
    expires_at: str | None = None

    @classmethod
    def from_enrollment(
        cls, body: dict[str, Any], *, serial: str, platform_url: str, credential: str
    ) -> Identity:
        """The identity described by an enrollment (or renewal) answer."""
        broker = body["broker"]
        heartbeat = body.get("heartbeat") or {}
        device_id = str(body["device_id"])
        return cls(
            device_id=device_id,
            serial=serial,
            state=str(body.get("state", "")),
            organization_id=str(body.get("organization_id", "")),
            credential=credential,
            platform_url=platform_url,
            broker=BrokerAddress(
                host=str(broker["host"]),
                port=int(broker["port"]),
                token_port=int(broker["token_port"]) if broker.get("token_port") else None,
                tls=bool(broker.get("tls", True)),
            ),
            topic_prefix=str((body.get("topics") or {}).get("prefix") or f"devices/{device_id}/"),
            heartbeat_interval=float(
                heartbeat.get("interval_seconds") or DEFAULT_HEARTBEAT_SECONDS
            ),
            missed_beats=int(heartbeat.get("missed_beats") or 3),
            renew_after=body.get("renew_after"),
            expires_at=body.get("expires_at"),
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Identity:
        return cls(**{**data, "broker": BrokerAddress(**data["broker"])})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def topic(self, suffix: str) -> str:
        return self.topic_prefix + suffix


class StateDir:
    """One device's state directory (see the module docstring for the files)."""

    def __init__(self, path: Path | str, *, fsync: bool = True) -> None:
        self.path = make_private_directory(Path(path))
        self.fsync = fsync

    # --- paths -----------------------------------------------------------------------------
    @property
    def credentials_file(self) -> Path:
        return self.path / "device.pem"

    @property
    def ca_file(self) -> Path:
        return self.path / "ca.pem"

    @property
    def outbox_dir(self) -> Path:
        return self.path / "outbox"

    # --- identity --------------------------------------------------------------------------
    def is_enrolled(self) -> bool:
        return (self.path / "identity.json").exists()

    def identity(self) -> Identity:
        try:
            return Identity.from_json(read_json(self.path / "identity.json"))
        except FileNotFoundError:
            raise NotEnrolled(f"{self.path} holds no credentials: run `enroll` first") from None

    def save_identity(self, identity: Identity) -> None:
        write_json(self.path / "identity.json", identity.to_json(), fsync=self.fsync)

    def next_boot(self) -> int:
        """Increment and return the boot counter (1 at the first start)."""
        path = self.path / "boot"
        try:
            boot = int(path.read_text().strip()) + 1
        except (FileNotFoundError, ValueError):
            boot = 1
        write_atomic(path, f"{boot}\n".encode(), fsync=self.fsync)
        return boot

    # --- credentials -----------------------------------------------------------------------
    def save_certificate(self, key: Any, chain_pem: str) -> None:
        """Install ``key`` with its certificate chain (enrollment or renewal), atomically."""
        data = keys.key_pem(key) + chain_pem.encode()
        write_atomic(self.credentials_file, data, mode=0o600, fsync=self.fsync)

    def certificate_chain(self) -> str:
        text = self.credentials_file.read_text()
        return text[text.index("-----BEGIN CERTIFICATE-----") :]

    def save_ca(self, pem: str) -> None:
        write_atomic(self.ca_file, pem.encode(), fsync=self.fsync)

    def save_token(self, token: str) -> None:
        write_atomic(self.path / "token", token.encode(), mode=0o600, fsync=self.fsync)

    def token(self) -> str:
        return (self.path / "token").read_text().strip()

    # --- an enrollment in progress ---------------------------------------------------------
    def pending_key(self) -> Any:
        """The key of the enrollment in progress: generated once, on the device, and kept so
        that every poll of a quarantined enrollment (and a restart) presents the same key."""
        path = self.path / "pending.key"
        try:
            return keys.load_key(path.read_bytes())
        except FileNotFoundError:
            key = keys.generate_key()
            write_atomic(path, keys.key_pem(key), mode=0o600, fsync=self.fsync)
            return key

    def pending(self) -> dict[str, Any]:
        try:
            return dict(read_json(self.path / "pending.json"))
        except FileNotFoundError:
            return {}

    def save_pending(self, answer: dict[str, Any]) -> None:
        write_json(self.path / "pending.json", answer, fsync=self.fsync)

    def clear_pending(self) -> None:
        for name in ("pending.key", "pending.json"):
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()

    # --- configuration and downlink --------------------------------------------------------
    def save_config(self, configuration: dict[str, Any]) -> None:
        write_json(self.path / "config.json", configuration, fsync=self.fsync)

    def config(self) -> dict[str, Any]:
        try:
            return dict(read_json(self.path / "config.json"))
        except FileNotFoundError:
            return {}

    def save_desired(self, payload: bytes) -> None:
        write_atomic(self.path / "desired.json", payload, fsync=self.fsync)

    def save_command(self, command_id: str, payload: bytes) -> Path:
        directory = make_private_directory(self.path / "commands")
        path = directory / f"{command_id}.json"
        write_atomic(path, payload, mode=0o600, fsync=self.fsync)
        return path
