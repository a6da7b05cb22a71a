"""Tests keep to a Redis database of their own: nothing a test enqueues reaches the Celery queue
that development and demo workers read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from django.conf import settings

from config.celery import app as celery_app
from tests.conftest import empty_if_alone

ROOT = Path(__file__).resolve().parent.parent
DEVELOPMENT_REDIS_URL = os.environ["REDIS_URL"]  # var/run/services.env, as `make run` reads it
DEVELOPMENT_DB = int(urlsplit(DEVELOPMENT_REDIS_URL).path.strip("/") or 0)


def with_database(url: str, number: int) -> str:
    return url.rsplit("/", 1)[0] + f"/{number}"


def queued_ids(client: redis.Redis) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in client.lrange("celery", 0, -1)]


def settings_of(**environment: str) -> subprocess.CompletedProcess[str]:
    script = "from django.conf import settings; print(settings.REDIS_URL)"
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=dict(os.environ, DJANGO_SETTINGS_MODULE="config.settings.test", **environment),
        capture_output=True,
        text=True,
        check=False,
    )


def test_every_redis_user_of_the_tests_is_on_the_tests_database() -> None:
    number = int(os.environ.get("TEST_REDIS_DB", "15"))
    url = with_database(DEVELOPMENT_REDIS_URL, number)
    channel_layers: dict[str, Any] = settings.CHANNEL_LAYERS

    users = (
        settings.TEST_REDIS_DB,
        settings.REDIS_URL,
        settings.CELERY_BROKER_URL,
        celery_app.conf.broker_url,
        settings.CACHES["default"]["LOCATION"],
        channel_layers["default"]["CONFIG"]["hosts"],
    )

    assert users == (number, url, url, url, url, [{"address": url, "socket_timeout": None}])
    assert number not in (DEVELOPMENT_DB, 11, 12, 13)


def test_a_task_sent_by_a_test_is_queued_in_the_tests_database_only() -> None:
    tests_db = redis.Redis.from_url(settings.REDIS_URL)
    development = redis.Redis.from_url(DEVELOPMENT_REDIS_URL)
    task_id = str(uuid.uuid4())
    try:
        # a name no worker knows: were it misrouted, a development worker would only refuse it
        celery_app.send_task("tests.redis_isolation_probe", task_id=task_id)

        assert task_id in queued_ids(tests_db)
        assert task_id not in queued_ids(development)
    finally:
        queue: list[Any] = tests_db.lrange("celery", 0, -1)  # type: ignore[assignment]
        for raw in queue:
            if json.loads(raw)["headers"]["id"] == task_id:
                tests_db.lrem("celery", 1, raw)
        tests_db.close()
        development.close()


@pytest.mark.parametrize("taken", [DEVELOPMENT_DB, 11, 12, 13])
def test_the_development_and_bench_databases_are_refused(taken: int) -> None:
    result = settings_of(TEST_REDIS_DB=str(taken))

    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"django.core.exceptions.ImproperlyConfigured: TEST_REDIS_DB={taken} is taken "
        f"(development: {DEVELOPMENT_DB}, benches: 11, 12, 13); choose another."
    )


def test_another_database_number_can_be_chosen() -> None:
    result = settings_of(TEST_REDIS_DB="9")

    assert (result.returncode, result.stdout) == (0, with_database(DEVELOPMENT_REDIS_URL, 9) + "\n")


def test_the_database_is_emptied_only_when_no_other_client_uses_it() -> None:
    url = with_database(DEVELOPMENT_REDIS_URL, 14)
    client, other = redis.Redis.from_url(url), redis.Redis.from_url(url)
    try:
        client.set("fleetops-test:probe", b"left by a former run")
        other.ping()  # another run, connected

        kept = empty_if_alone(client), client.exists("fleetops-test:probe")
        other.close()
        other_gone = wait_until_alone(client)
        emptied = empty_if_alone(client), client.exists("fleetops-test:probe")
    finally:
        client.delete("fleetops-test:probe")
        client.close()

    assert (kept, other_gone, emptied) == ((False, 1), True, (True, 0))


def wait_until_alone(client: redis.Redis) -> bool:
    """The server notices a closed connection a moment after the close."""
    me = client.client_id()
    for _ in range(100):
        peers: list[dict[str, Any]] = client.client_list()
        if not [p for p in peers if int(p["db"]) == 14 and int(p["id"]) != me]:
            return True
        time.sleep(0.02)
    return False
