"""The reference agent against the running platform (live server) and the real broker: zero-touch
enrollment with a claim token, quarantine polling, refusals, rate limits and renewal."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connections

from agent import keys
from agent.enroll import Clock, Enrollment, EnrollmentError, Proof, enroll
from agent.state import StateDir
from apps.core.actors import SYSTEM
from apps.devices import services
from apps.devices.choices import CredentialStatus
from apps.devices.models import Device, DeviceCertificate
from apps.devices.pki import certs
from tests.broker_support import MqttBroker
from tests.devices.enrollment.support import claim_policy, claim_token, make_profile
from tests.factories import make_organization

from .support import REPOSITORY, drain, start_agent, telemetry_ids, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ONLINE = {"state": "online"}


@pytest.fixture
def platform(settings: Any, mqtt_broker: MqttBroker, live_server: Any) -> str:
    """The live platform, handing out the test broker's address at enrollment."""
    settings.MQTT_PUBLIC_HOST = mqtt_broker.host
    settings.MQTT_DEVICE_PORT = mqtt_broker.device_port
    settings.MQTT_TOKEN_PORT = mqtt_broker.token_port
    return str(live_server.url)


def agent_command(*arguments: str, token: str = "") -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "FLEETOPS_CLAIM_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "agent", *arguments],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def leaf_fingerprint(state: StateDir) -> str:
    return certs.fingerprint(keys.certificates(state.certificate_chain())[0])


def test_a_device_with_only_a_claim_token_enrolls_and_comes_online_over_mqtts(
    platform: str, mqtt_broker: MqttBroker, tmp_path: Path
) -> None:
    acme = make_organization("Acme")
    policy = claim_policy(acme, make_profile(acme, "sensor", interval=45))
    token = claim_token(policy)
    state = StateDir(tmp_path / "device")

    enrolled = agent_command(
        *("enroll", "--url", platform, "--serial", "SN-ZT-1", "--state-dir", str(state.path)),
        token=token,
    )

    assert enrolled.returncode == 0, enrolled.stderr
    answer = json.loads(enrolled.stdout)
    device = Device.objects.get(serial="SN-ZT-1")
    assert answer["device_id"] == str(device.pk)
    assert (answer["state"], device.state) == ("active", "active")
    assert answer["broker"] == f"{mqtt_broker.host}:{mqtt_broker.device_port}"
    issued = DeviceCertificate.objects.get(device=device)
    assert issued.fingerprint == leaf_fingerprint(state)
    assert oct((state.path / "device.pem").stat().st_mode & 0o777) == "0o600"
    assert state.identity().heartbeat_interval == 45.0
    assert not (state.path / "pending.key").exists()

    mqtt_broker.sync()  # the organization's new intermediate CA: its CRL for the broker
    inbox = connect_inbox(mqtt_broker, device)
    agent = start_agent(state, "--telemetry-interval", "0.2", "--samples", "3")
    try:
        wait_until(
            lambda: len(telemetry_ids(inbox.received)) >= 3 or inbox.poll(),
            timeout=30,
            what="three telemetry samples",
        )
    finally:
        agent.stop()
    inbox.poll()
    inbox.session.close()
    by_topic = inbox.by_topic(str(device.pk))
    assert by_topic["status"][0] == {"state": "online"}
    assert by_topic["status"][-1] == {"state": "offline"}
    assert [(body["boot"], body["seq"]) for body in by_topic["heartbeat"]][:1] == [(1, 1)]
    assert set(telemetry_ids(inbox.received)) == {(1, 1), (1, 2), (1, 3)}


class Inbox:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.received: list[Any] = []

    def poll(self) -> bool:
        self.received.extend(drain(self.session))
        return False

    def by_topic(self, device_id: str) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for message in self.received:
            suffix = message.topic.removeprefix(f"devices/{device_id}/")
            found.setdefault(suffix, []).append(json.loads(message.payload))
        return found


def connect_inbox(broker: MqttBroker, device: Device) -> Inbox:
    from tests.broker_support import connect_platform

    session = connect_platform(broker)
    session.subscribe(f"devices/{device.pk}/#", qos=1)
    return Inbox(session)


def test_a_quarantined_device_polls_until_approved_then_installs_its_certificate(
    platform: str, tmp_path: Path
) -> None:
    acme = make_organization("Acme")
    policy = claim_policy(acme, make_profile(acme), first_contact="quarantine")
    state = StateDir(tmp_path / "device")
    request = Enrollment(
        url=platform, serial="SN-Q-1", proof=Proof(claim_token=claim_token(policy))
    )
    waits: list[float] = []
    pending_keys: list[bytes] = []

    def approve() -> None:
        try:
            device = Device.objects.get(serial="SN-Q-1")
            assert device.state == "discovered"
            assert state.pending() == {"device_id": str(device.pk), "state": "discovered"}
            services.device_transition(actor=SYSTEM, device=device, transition="approve")
        finally:
            connections.close_all()  # this worker thread's connection

    async def operator_approves_during_the_wait(seconds: float) -> None:
        waits.append(seconds)
        pending_keys.append((state.path / "pending.key").read_bytes())
        await asyncio.to_thread(approve)  # the ORM is synchronous: not on the event loop

    identity = asyncio.run(enroll(state, request, sleep=operator_approves_during_the_wait))

    device = Device.objects.get(serial="SN-Q-1")
    assert (identity.device_id, identity.state, device.state) == (
        str(device.pk),
        "active",
        "active",
    )
    assert len(waits) == 1
    assert 60 <= waits[0] <= 75  # the platform's retry_after (60 s), spread by up to a quarter
    # the key generated before the first request is the one certified after approval
    installed_key = keys.load_key(state.credentials_file.read_bytes())
    assert keys.key_pem(installed_key) == pending_keys[0]
    assert DeviceCertificate.objects.get(device=device).fingerprint == leaf_fingerprint(state)
    assert not (state.path / "pending.key").exists()
    assert not (state.path / "pending.json").exists()


def test_a_refused_claim_token_exits_3_with_the_platforms_reason_and_stores_nothing(
    platform: str, tmp_path: Path
) -> None:
    state_dir = tmp_path / "device"

    refused = agent_command(
        *("enroll", "--url", platform, "--serial", "SN-X", "--state-dir", str(state_dir)),
        token="fo_claim_abcdef123456_not-a-real-secret",
    )

    assert refused.returncode == 3
    assert refused.stderr.startswith("error: Enrollment refused: HTTP 401")
    assert not (state_dir / "identity.json").exists()
    assert not Device.objects.exists()


def test_a_rate_limited_enrollment_waits_as_long_as_retry_after_says(
    platform: str, settings: Any, tmp_path: Path
) -> None:
    settings.ENROLL_RATE_PER_SOURCE = 1
    acme = make_organization("Acme")
    token = claim_token(claim_policy(acme, make_profile(acme)))
    first = StateDir(tmp_path / "first")
    asyncio.run(
        enroll(first, Enrollment(url=platform, serial="SN-R-1", proof=Proof(claim_token=token)))
    )
    waits: list[float] = []

    async def the_window_passes(seconds: float) -> None:
        waits.append(seconds)
        cache.clear()  # this test's key space only (KEY_PREFIX): the minute is over

    second = StateDir(tmp_path / "second")
    request = Enrollment(url=platform, serial="SN-R-2", proof=Proof(claim_token=token))
    identity = asyncio.run(enroll(second, request, sleep=the_window_passes))

    assert identity.device_id == str(Device.objects.get(serial="SN-R-2").pk)
    assert len(waits) == 1
    assert 1 <= waits[0] <= 90  # Retry-After (the rest of the minute) plus at most half again


def test_an_enrollment_refused_in_process_names_the_field(platform: str, tmp_path: Path) -> None:
    acme = make_organization("Acme")
    token = claim_token(claim_policy(acme, make_profile(acme)))
    request = Enrollment(
        url=platform, serial="SN-F-1", proof=Proof(claim_token=token), hardware_revision="r" * 65
    )

    with pytest.raises(EnrollmentError) as refused:
        asyncio.run(enroll(StateDir(tmp_path / "device"), request))

    assert refused.value.exit_code == 3
    assert refused.value.reply is not None
    assert refused.value.reply.status == 400
    assert list(refused.value.reply.error["fields"]) == ["hardware_revision"]
    assert str(refused.value).startswith("Enrollment refused: HTTP 400")
    assert "[hardware_revision: " in str(refused.value)
    assert not Device.objects.exists()


def test_the_running_agent_renews_its_certificate_once_past_renew_after(
    platform: str, mqtt_broker: MqttBroker, tmp_path: Path
) -> None:
    acme = make_organization("Acme")
    token = claim_token(claim_policy(acme, make_profile(acme)))
    state = StateDir(tmp_path / "device")
    request = Enrollment(url=platform, serial="SN-N-1", proof=Proof(claim_token=token))
    identity = asyncio.run(enroll(state, request))
    mqtt_broker.sync()
    first_fingerprint = leaf_fingerprint(state)
    state.save_identity(dataclasses.replace(identity, renew_after="2020-01-01T00:00:00Z"))
    device = Device.objects.get(pk=identity.device_id)

    agent = start_agent(state, "--telemetry-interval", "0")
    try:
        wait_until(
            lambda: DeviceCertificate.objects.filter(device=device).count() == 2,
            timeout=30,
            what="a second certificate",
        )
        wait_until(
            lambda: state.identity().renew_after != "2020-01-01T00:00:00Z",
            timeout=10,
            what="the new dates",
        )
    finally:
        agent.stop()

    first, second = DeviceCertificate.objects.filter(device=device).order_by("id")
    assert (first.fingerprint, second.fingerprint) == (first_fingerprint, leaf_fingerprint(state))
    assert second.status == CredentialStatus.ACTIVE
    assert state.identity().expires_at == second.not_after.isoformat().replace("+00:00", "Z")
    assert "renewed the certificate" in agent.log()

    # the next connection presents the new certificate, and the broker accepts it
    inbox = connect_inbox(mqtt_broker, device)
    again = start_agent(state, "--telemetry-interval", "0")
    try:
        wait_until(
            lambda: inbox.poll() or ONLINE in inbox.by_topic(str(device.pk)).get("status", []),
            timeout=30,
            what="the renewed device online",
        )
    finally:
        again.stop()
        inbox.session.close()
    # the retained "offline" of the first run comes first, then the new connection's "online"
    assert inbox.by_topic(str(device.pk))["status"][:2] == [{"state": "offline"}, ONLINE]


def test_a_token_device_enrolls_without_a_csr_and_connects_on_the_token_port(
    platform: str, mqtt_broker: MqttBroker, tmp_path: Path
) -> None:
    acme = make_organization("Acme")
    policy = claim_policy(acme, make_profile(acme), allow_token_credentials=True)
    state = StateDir(tmp_path / "device")

    enrolled = agent_command(
        *("enroll", "--url", platform, "--serial", "SN-TOK-1", "--state-dir", str(state.path)),
        *("--credential", "token"),
        token=claim_token(policy),
    )

    assert enrolled.returncode == 0, enrolled.stderr
    device = Device.objects.get(serial="SN-TOK-1")
    identity = state.identity()
    assert (identity.credential, identity.broker.token_port) == ("token", mqtt_broker.token_port)
    assert state.token().startswith("fo_dev_")
    assert oct((state.path / "token").stat().st_mode & 0o777) == "0o600"
    assert not state.credentials_file.exists()
    assert not DeviceCertificate.objects.filter(device=device).exists()

    mqtt_broker.sync()  # the token into the broker's password file
    inbox = connect_inbox(mqtt_broker, device)
    agent = start_agent(state, "--telemetry-interval", "0.2", "--samples", "2")
    try:
        wait_until(
            lambda: inbox.poll() or len(telemetry_ids(inbox.received)) >= 2,
            timeout=30,
            what="two samples over the token listener",
        )
    finally:
        agent.stop()
        inbox.session.close()
    assert inbox.by_topic(str(device.pk))["status"][0] == ONLINE
    assert set(telemetry_ids(inbox.received)) == {(1, 1), (1, 2)}


def test_a_device_whose_clock_is_hours_off_adopts_the_platforms_time_and_enrolls(
    platform: str, tmp_path: Path
) -> None:
    acme = make_organization("Acme")
    token = claim_token(claim_policy(acme, make_profile(acme)))
    clock = Clock(offset=-3 * 3600)  # booted without a real-time clock
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    request = Enrollment(url=platform, serial="SN-C-1", proof=Proof(claim_token=token))
    identity = asyncio.run(enroll(StateDir(tmp_path / "d"), request, sleep=no_wait, clock=clock))

    assert identity.device_id == str(Device.objects.get(serial="SN-C-1").pk)
    assert waits == [0.0]  # refused once (409 stale_timestamp), retried at once
    assert abs(clock.offset) < 5  # the HTTP Date header's time, to the second
