"""``python -m agent simulate``: a small fleet enrolls zero-touch through the live platform and
comes online on the real broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from apps.devices.models import Device
from apps.devices.pki import authorities
from tests.broker_support import MqttBroker, connect_platform
from tests.devices.enrollment.support import claim_policy, claim_token, make_profile
from tests.factories import make_organization

from .support import REPOSITORY, drain

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

COUNT = 6


def test_a_simulated_fleet_enrolls_zero_touch_and_comes_online(
    settings: Any, mqtt_broker: MqttBroker, live_server: Any, tmp_path: Path
) -> None:
    settings.MQTT_PUBLIC_HOST = mqtt_broker.host
    settings.MQTT_DEVICE_PORT = mqtt_broker.device_port
    acme = make_organization("Acme")
    token = claim_token(claim_policy(acme, make_profile(acme)), max_uses=COUNT)
    authorities.intermediate(acme)  # created ahead, so the broker has its CRL before anyone
    mqtt_broker.sync()  # connects (in production `broker_sync --watch` does this)
    watcher = connect_platform(mqtt_broker)
    watcher.subscribe("devices/+/status", qos=1)

    ran = subprocess.run(
        [
            *(sys.executable, "-m", "agent", "simulate", "--count", str(COUNT)),
            *("--url", live_server.url, "--state-dir", str(tmp_path / "fleet")),
            *("--serial-prefix", "SIM-T-", "--telemetry-interval", "1", "--duration", "12"),
            *("--summary-interval", "3"),
        ],
        cwd=REPOSITORY,
        env={**os.environ, "FLEETOPS_CLAIM_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert any(line.startswith(f"all {COUNT} devices enrolled in ") for line in lines), lines
    assert any(line.startswith(f"all {COUNT} devices connected in ") for line in lines), lines
    final = lines[-1]
    assert f"enrolled {COUNT}/{COUNT} connected 0 " in final  # all said goodbye
    assert "refused 0 dropped 0" in final
    devices = Device.objects.filter(serial__startswith="SIM-T-")
    assert sorted(devices.values_list("serial", "state")) == [
        (f"SIM-T-{n:05d}", "active") for n in range(1, COUNT + 1)
    ]
    statuses: dict[str, list[str]] = {}
    for message in drain(watcher):
        device_id = message.topic.split("/")[1]
        statuses.setdefault(device_id, []).append(json.loads(message.payload)["state"])
    watcher.close()
    assert statuses == {str(device.pk): ["online", "offline"] for device in devices}


def test_power_cuts_take_one_device_after_another_offline_and_back(
    settings: Any, mqtt_broker: MqttBroker, live_server: Any, tmp_path: Path
) -> None:
    settings.MQTT_PUBLIC_HOST = mqtt_broker.host
    settings.MQTT_DEVICE_PORT = mqtt_broker.device_port
    acme = make_organization("Acme")
    token = claim_token(claim_policy(acme, make_profile(acme)), max_uses=2)
    authorities.intermediate(acme)
    mqtt_broker.sync()
    watcher = connect_platform(mqtt_broker)
    watcher.subscribe("devices/+/status", qos=1)

    ran = subprocess.run(
        [
            *(sys.executable, "-m", "agent", "simulate", "--count", "2"),
            *("--url", live_server.url, "--state-dir", str(tmp_path / "fleet")),
            *("--serial-prefix", "SIM-O-", "--telemetry-interval", "0", "--duration", "11"),
            *("--outage-every", "4", "--outage-seconds", "2"),
        ],
        cwd=REPOSITORY,
        env={**os.environ, "FLEETOPS_CLAIM_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert ran.returncode == 0, ran.stderr
    cuts = [line for line in ran.stdout.splitlines() if "power cut" in line]
    assert cuts == ["SIM-O-00001: power cut for 2 s", "SIM-O-00002: power cut for 2 s"]
    serials = dict(Device.objects.filter(serial__startswith="SIM-O-").values_list("pk", "serial"))
    statuses: dict[str, list[str]] = {}
    for message in drain(watcher):
        serial = serials[uuid.UUID(message.topic.split("/")[1])]
        statuses.setdefault(serial, []).append(json.loads(message.payload)["state"])
    watcher.close()
    back_again = ["online", "offline", "online", "offline"]
    assert statuses == {"SIM-O-00001": back_again, "SIM-O-00002": back_again}
