from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from apps.devices.models import Device
from tests.broker_support import (
    DeviceCredentials,
    MqttBroker,
    MqttSession,
    connect_device,
    connect_platform,
    connect_token,
    create_token,
    issue_certificate,
)
from tests.devices.registry_support import make_device, make_version
from tests.factories import make_organization

# DESIGN.md's topic table, written out here on purpose (not imported from apps.devices.broker).
DEVICE_PUBLISHES = (
    "heartbeat",
    "telemetry",
    "events",
    "status",
    "config/reported",
    "commands/c-1/result",
    "ota/status",
)
DEVICE_RECEIVES = ("config/desired", "commands/c-1", "ota/job")


@dataclass
class Fleet:
    """Two certificate devices (A, B) and a token device (T) of one organization."""

    broker: MqttBroker
    a: Device
    b: Device
    t: Device
    a_credentials: DeviceCredentials
    b_credentials: DeviceCredentials
    t_token: str
    directory: Path
    sessions: list[MqttSession] = field(default_factory=list)

    def device(self, who: str, **options: object) -> MqttSession:
        """Connect A or B with its certificate, or T with its token."""
        if who == "t":
            session = connect_token(self.broker, str(self.t.pk), self.t_token, **options)
        else:
            credentials = self.a_credentials if who == "a" else self.b_credentials
            session = connect_device(self.broker, credentials, **options)
        self.sessions.append(session)
        return session

    def platform(self, **options: object) -> MqttSession:
        session = connect_platform(self.broker, **options)
        self.sessions.append(session)
        return session

    def topic(self, who: str, suffix: str) -> str:
        return f"devices/{getattr(self, who).pk}/{suffix}"


@pytest.fixture
def fleet(db: None, mqtt_broker: MqttBroker, tmp_path: Path) -> Iterator[Fleet]:
    organization = make_organization("Acme")
    version = make_version(organization)
    a, b, t = (
        make_device(organization, version, serial, state="active") for serial in ("A", "B", "T")
    )
    built = Fleet(
        broker=mqtt_broker,
        a=a,
        b=b,
        t=t,
        a_credentials=issue_certificate(a, tmp_path),
        b_credentials=issue_certificate(b, tmp_path),
        t_token=create_token(t),
        directory=tmp_path,
    )
    mqtt_broker.sync()
    yield built
    for session in built.sessions:
        session.close()
