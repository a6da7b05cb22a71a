"""Benchmark: fan-out of one command to N simulated devices (issue 6), against the broker alone.

In a dedicated database (``fleetops_bench_commands``), Redis database 10 and a Mosquitto of its
own running the platform's generated configuration, measures in one run:

1. the baseline: the broker alone delivering N QoS 1 messages, one to each device's
   ``devices/<id>/commands/<x>``: a bare paho-mqtt publisher on the platform account, and the
   simulated fleet receiving them; from the first publish to the last message received;
2. the platform: one ``ping`` change request over the N devices executed through
   ``apps.changes.execution.change_request_execute`` (commands bulk-created, downlinks queued),
   the downlink outbox published (``publish_pending``, as the Celery task does), the fleet
   answering each command like the agent (``received``, ``in_progress``, ``succeeded``, QoS 1 on
   ``commands/<id>/result``), an ingest worker (``manage.py ingest``) recording the results;
   from the execute call to the last command ``succeeded`` in the database.

The simulated fleet is ``RESPONDERS`` processes on the platform account, each holding a share of
``devices/+/commands/+`` (a shared subscription): it stands for N devices without N TLS
sessions (``bench/connectivity.py`` measures those). Prints both times and the ratio
platform / broker (lower is better; no goal: the figure is recorded in docs/performance.md).

Usage: python bench/commands.py [--scale quick|full] [--devices N]
       (quick: 2,000 devices; full: 10,000)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.prod")

from bench import ingest_mqtt as mq  # noqa: E402

SCALES = {"quick": 2_000, "full": 10_000}
DATABASE = "fleetops_bench_commands"
REDIS_DB = 10
RESPONDERS = 2
OUT = ROOT / "var" / "bench"
WORK = OUT / "commands"
TIMEOUT = 600.0
CATALOG = [{"name": "ping", "schema": {"type": "object"}, "criticality": "normal"}]


def setup(devices: int) -> list[str]:
    """The bench database: the ingest bench's world (a manufacturer, its customer, a profile,
    ``devices`` active devices) with a ``ping`` command in the profile's catalog."""
    import redis

    from bench import registry_data as data

    base, _ = data.admin_url()
    data.recreate_database(DATABASE)
    os.environ["DATABASE_URL"] = f"{base}/{DATABASE}"
    os.environ["REDIS_URL"] = os.environ["REDIS_URL"].rpartition("/")[0] + f"/{REDIS_DB}"
    os.environ["SECRET_KEY"] = secrets.token_urlsafe(48)
    redis.Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    import django

    django.setup()
    from apps.profiles.models import ProfileVersion
    from bench.ingest_world import build_world

    ids = build_world(devices)
    ProfileVersion.objects.update(command_catalog=CATALOG)
    return ids


# --- the simulated fleet ---------------------------------------------------------------------


def _respond(broker: mq.Broker, index: int, answer: bool, ready: Any, seen: Any, last: Any) -> None:
    """One share of the fleet: receives commands (counted in ``seen``, the time of the latest
    in ``last``) and, when ``answer``, reports on each like the agent. Runs until terminated."""
    import paho.mqtt.client as mqtt

    # a clean session: a stopped fleet must not keep a share of the subscription
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"bench-fleet-{index}-{secrets.token_hex(3)}",
        clean_session=True,
    )
    client.username_pw_set(broker.username, broker.password)
    client.max_inflight_messages_set(mq.INFLIGHT)
    client.max_queued_messages_set(0)

    def received(_client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        if answer:
            topic = message.topic + "/result"
            for body in (
                b'{"status":"received"}',
                b'{"status":"in_progress"}',
                b'{"status":"succeeded","output":{"pong":true}}',
            ):
                client.publish(topic, body, qos=1)
        with seen.get_lock():
            seen.value += 1
            last.value = time.time()

    client.on_message = received
    client.on_connect = lambda c, *a: c.subscribe("$share/fleet/devices/+/commands/+", qos=1)
    client.on_subscribe = lambda *a: ready.put(index)
    client.connect(broker.host, broker.port, 60)
    client.loop_forever()


class Fleet:
    """``RESPONDERS`` processes sharing the fleet's command topics."""

    def __init__(self, broker: mq.Broker, *, answer: bool) -> None:
        context = multiprocessing.get_context("fork")
        self.ready = context.Queue()
        self.seen = context.Value("q", 0)
        self.last = context.Value("d", 0.0)
        self.processes = [
            context.Process(
                target=_respond, args=(broker, k, answer, self.ready, self.seen, self.last)
            )
            for k in range(RESPONDERS)
        ]

    def __enter__(self) -> Fleet:
        for process in self.processes:
            process.start()
        for _ in self.processes:
            self.ready.get(timeout=30)
        return self

    def wait(self, expected: int) -> float:
        """Wait until ``expected`` commands arrived; the time (epoch) the last one did."""
        deadline = time.monotonic() + TIMEOUT
        while self.seen.value < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"the fleet received {self.seen.value} of {expected} messages")
            time.sleep(0.01)
        return float(self.last.value)

    def __exit__(self, *exc: Any) -> None:
        for process in self.processes:
            process.terminate()
            process.join(timeout=5)


def run_broker(broker: mq.Broker, devices: list[str]) -> float:
    """The broker alone: one QoS 1 message to each device's command topic, published by a
    bare paho-mqtt client; first publish to last message received by the fleet."""
    messages = [
        (f"devices/{device}/commands/{secrets.token_hex(8)}", b'{"id":"x","name":"ping"}')
        for device in devices
    ]
    with Fleet(broker, answer=False) as fleet:
        started = time.time()
        mq.publish(broker, messages, processes=1)
        return fleet.wait(len(devices)) - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="quick")
    parser.add_argument("--devices", type=int)
    arguments = parser.parse_args()
    count = arguments.devices or SCALES[arguments.scale]
    print(f"scale={arguments.scale}: one command to {count:,} devices", flush=True)
    devices = setup(count)
    from bench.ingest_world import broker as running_broker

    with running_broker(WORK / "broker") as broker:
        broker_seconds = run_broker(broker, devices)
        print(f"  broker alone: {count:,} messages delivered in {broker_seconds:.2f} s", flush=True)
        platform_seconds, detail = run_platform(broker, count)
        print(
            f"  platform: execute -> all {count:,} results recorded in {platform_seconds:.2f} s "
            f"({detail})",
            flush=True,
        )
    ratio = platform_seconds / broker_seconds
    print(f"ratio platform / broker = {ratio:.1f}")
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"commands-{arguments.scale}.json"
    record = {
        "devices": count,
        "broker_seconds": broker_seconds,
        "platform_seconds": platform_seconds,
        "ratio": ratio,
        "detail": detail,
        "load": os.getloadavg(),
    }
    out.write_text(json.dumps(record, indent=2))
    print(f"(figures in {out.relative_to(ROOT)})")
    return 0


def run_platform(broker: mq.Broker, count: int) -> tuple[float, str]:
    """Execute the request, publish its downlinks, wait until every result is recorded."""
    from django.conf import settings
    from django.utils import timezone

    from apps.accounts.models import Organization
    from apps.changes import execution, services
    from apps.core.actors import SYSTEM
    from apps.devices.downlinks import publish_pending

    settings.MQTT_URL = broker.url
    worker = start_worker(broker)
    customer = Organization.objects.get(name="Northwind")
    request = services.change_request_create(
        actor=SYSTEM,
        organization=customer,
        kind="command",
        title="bench ping",
        spec={"command": "ping"},
        target={"filter": {"state": ["active"]}},
        expires_at=timezone.now() + timedelta(hours=1),
    )
    try:
        with Fleet(broker, answer=True):
            started = time.monotonic()
            execution.change_request_execute(actor=SYSTEM, request=request)
            executed = time.monotonic() - started
            published = 0
            while published < count:
                published += publish_pending()
            sent = time.monotonic() - started
            done = _wait_done(request, count)
            total = time.monotonic() - started
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    if done != count:
        raise SystemExit(f"only {done} of {count} commands succeeded")
    return total, f"execute {executed:.2f} s, published by {sent:.2f} s"


def _wait_done(request: Any, count: int) -> int:
    from apps.commands.models import Command

    deadline = time.monotonic() + TIMEOUT
    done = 0
    while time.monotonic() < deadline:
        done = Command.objects.filter(request=request, status="succeeded").count()
        if done == count:
            break
        time.sleep(0.05)
    return done


def start_worker(broker: mq.Broker) -> subprocess.Popen[bytes]:
    WORK.mkdir(parents=True, exist_ok=True)
    log = WORK / "ingest.log"
    env = dict(os.environ, MQTT_URL=broker.url, DJANGO_SETTINGS_MODULE="config.settings.prod")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "ingest", "--name", "bench-commands"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while "subscribed to " not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the ingest worker did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)
    return process


if __name__ == "__main__":
    sys.exit(main())
