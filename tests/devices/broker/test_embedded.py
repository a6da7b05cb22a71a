"""``deploy/embedded.py up`` runs Mosquitto with the platform's generated configuration (what
``make run`` and ``make test`` start): three listeners, a password-protected platform account
in ``MQTT_URL``, the broker's files under ``var/mosquitto/fleetops``. Run here with a private
``var/`` directory, the test server's PostgreSQL (a scratch database) and Redis."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from tests.broker_support import ConnectionRefused, MqttBroker, Received, connect

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


@pytest.fixture
def scratch_database(db: None) -> Iterator[str]:
    """An empty database on the test server, dropped afterwards: ``up`` migrates it."""
    database = connection.settings_dict
    name = f"{database['NAME']}_embedded_{secrets.token_hex(3)}"
    server = (
        f"host={database['HOST']} port={database['PORT']} user={database['USER']} dbname=postgres"
    )
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{name}"
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def embedded(command: str, var: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MQTT_")}
    env.update(
        FLEETOPS_VAR=str(var),
        DATABASE_URL=database_url,
        REDIS_URL=settings.REDIS_URL,
        DJANGO_SETTINGS_MODULE="config.settings.dev",
    )
    env.pop("PKI_ROOT_CERT_FILE", None)
    env.pop("PKI_ROOT_KEY_FILE", None)
    result = subprocess.run(
        [sys.executable, "deploy/embedded.py", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_the_embedded_broker_runs_the_platform_configuration(
    scratch_database: str, tmp_path: Path
) -> None:
    var = tmp_path / "var"
    try:
        started = embedded("up", var, scratch_database)
        state = dict(
            line.split("=", 1)
            for line in (var / "run" / "services.env").read_text().splitlines()[1:]
        )
        url = urlsplit(state["MQTT_URL"])
        assert started.stdout.splitlines() == [
            f"broker configuration written: {var}/mosquitto/fleetops/mosquitto.conf",
            f"started embedded mosquitto: mqtt://fleetops:***@127.0.0.1:{url.port}",
        ]
        assert sorted(state) == [
            "MOSQUITTO_PID",
            "MQTT_BROKER_DIR",
            "MQTT_BROKER_PIDFILE",
            "MQTT_DEVICE_PORT",
            "MQTT_TOKEN_PORT",
            "MQTT_URL",
        ]
        assert (state["MQTT_BROKER_DIR"], state["MQTT_BROKER_PIDFILE"]) == (
            f"{var}/mosquitto/fleetops",
            f"{var}/run/mosquitto.pid",
        )
        assert (var / "run" / "mosquitto.pid").read_text().strip() == state["MOSQUITTO_PID"]
        running = MqttBroker(
            directory=Path(state["MQTT_BROKER_DIR"]),
            device_port=int(state["MQTT_DEVICE_PORT"]),
            token_port=int(state["MQTT_TOKEN_PORT"]),
            platform_port=int(url.port or 0),
            platform_username=str(url.username),
            platform_password=str(url.password),
        )
        platform = connect(
            running,
            port=running.platform_port,
            tls=False,
            username=running.platform_username,
            password=running.platform_password,
        )
        assert platform.subscribe("devices/d-1/telemetry") == [1]
        platform.publish("devices/d-1/telemetry", b"hello")
        assert platform.until("devices/d-1/telemetry", b"hello") == [
            Received("devices/d-1/telemetry", b"hello", 1, False)
        ]
        platform.close()
        with pytest.raises(ConnectionRefused, match="Not authorized"):
            connect(running, port=running.platform_port, tls=False, client_id="anonymous")
        with pytest.raises(ConnectionRefused):  # TLS verified against ca.pem, no client cert
            connect(running, port=running.device_port, client_id="d-1")

        again = embedded("up", var, scratch_database)  # idempotent: nothing restarted
        assert again.stdout == ""
    finally:
        embedded("down", var, scratch_database)
    assert not (var / "run" / "services.env").exists()
