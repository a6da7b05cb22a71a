"""End to end, as a customer sees it: a device that powers up with only a claim token enrolls
through the served platform, connects over MQTTS with its new certificate, and appears in the
open fleet page, online, without a reload.

Real parts only: daphne serving the test database, the platform-generated Mosquitto with TLS,
the connectivity worker, the reference agent's simulator (one device) and Debian's Chromium.
Screenshots land in test-artifacts/screenshots/zero-touch-*.png.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from apps.accounts.roles import Role
from apps.devices.choices import Connectivity, DeviceState
from apps.devices.models import Device
from apps.devices.pki import authorities
from tests.broker_support import MqttBroker
from tests.devices.enrollment.support import claim_policy, claim_token, make_profile
from tests.devices.test_connectivity_worker import start_worker  # noqa: F401
from tests.portal.conftest import verified_member
from tests.portal.test_browser import sign_in
from tests.portal.test_fleet_browser import in_thread, page, served, shot  # noqa: F401

from .support import REPOSITORY, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker_env(mqtt_broker: MqttBroker, monkeypatch: pytest.MonkeyPatch) -> MqttBroker:
    """The served platform hands out the test broker at enrollment (set before it starts)."""
    monkeypatch.setenv("MQTT_PUBLIC_HOST", mqtt_broker.host)
    monkeypatch.setenv("MQTT_DEVICE_PORT", str(mqtt_broker.device_port))
    monkeypatch.setenv("MQTT_TOKEN_PORT", str(mqtt_broker.token_port))
    return mqtt_broker


def simulate(url: str, token: str, state_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "agent", "simulate", "--count", "1"),
            *("--url", url, "--state-dir", str(state_dir), "--serial-prefix", "ZT-"),
            *("--telemetry-interval", "0"),
        ],
        cwd=REPOSITORY,
        env={**os.environ, "FLEETOPS_CLAIM_TOKEN": token},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def test_a_claim_token_device_appears_online_in_the_open_fleet_page(
    tree: Any,
    broker_env: MqttBroker,
    start_worker: Any,  # noqa: F811
    page: Any,  # noqa: F811
    served: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    acme, customer = tree["acme"], tree["retail"]
    policy = claim_policy(acme, make_profile(acme, "sensor"), target_organization=customer)
    token = claim_token(policy)
    # The customer's intermediate CA exists before the device does, and the broker has its CRL
    # (in production broker_sync does this within its watch interval).
    authorities.intermediate(customer)
    broker_env.sync()
    start_worker()
    verified_member(customer, Role.VIEWER, "viewer@retail.test")
    sign_in(page, "viewer@retail.test")
    page.goto(f"/o/{customer.pk}/devices/")
    page.wait_for_selector("body[data-live=open]")
    assert page.locator("#fleet tr[data-device-id]").count() == 0
    shot(page, "zero-touch-1-empty")

    device_process = simulate(served, token, tmp_path / "fleet", tmp_path / "agent.log")
    try:
        device = wait_until(
            lambda: in_thread(lambda: Device.objects.filter(serial__startswith="ZT-").first()),
            timeout=60,
            what="the device to enroll",
        )
        page.wait_for_function(
            "id => document.querySelector(`#fleet tr[data-device-id='${id}'] "
            "[data-connectivity]`)?.dataset.connectivity === 'online'",
            arg=str(device.pk),
            timeout=60_000,
        )
        shot(page, "zero-touch-2-online")
        device = in_thread(lambda: Device.objects.get(pk=device.pk))
        assert (device.organization_id, device.state) == (customer.pk, DeviceState.ACTIVE)
        assert device.connectivity == Connectivity.ONLINE
        assert device.provisioning["heartbeat"] == {"interval_seconds": 60, "missed_beats": 3}
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    finally:
        device_process.terminate()
        device_process.wait(timeout=30)
