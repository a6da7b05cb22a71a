"""The platform as `make run` serves it: daphne in front of Django over real services."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> tuple[int, Message, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


@pytest.fixture
def daphne():
    port = free_port()
    settings = connection.settings_dict
    database_url = (
        f"postgres://{settings['USER']}@{settings['HOST']}:{settings['PORT']}/{settings['NAME']}"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings.test", DATABASE_URL=database_url)
    process = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/daphne"),
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "config.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


def test_daphne_serves_health_api_docs_and_the_error_envelope(daphne):
    status, _, body = get(f"{daphne}/healthz")
    assert status == 200
    assert json.loads(body) == {"status": "ok", "database": "ok", "redis": "ok"}

    status, headers, body = get(f"{daphne}/api/v1/organizations/")
    assert status == 401
    error = json.loads(body)["error"]
    assert error["status"] == 401
    assert error["request_id"] == headers["X-Request-ID"]

    status, _, body = get(f"{daphne}/api/v1/no-such-thing/")
    assert status == 404
    assert json.loads(body)["error"]["code"] == "not_found"

    status, headers, _ = get(f"{daphne}/api/schema/")
    assert status == 200
    assert headers["Content-Type"].startswith("application/vnd.oai.openapi")

    status, _, _ = get(f"{daphne}/accounts/login/")
    assert status == 200
