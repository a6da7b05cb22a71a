"""MQTT side of ``bench/ingest.py``: the backlog publishers, the bare paho-mqtt drain (the
baseline) and the ingest worker processes. No Django here except in the worker processes.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parent.parent
BARE_SUBSCRIPTION = "$share/bare/devices/+/telemetry"
INFLIGHT = 1000
OUTSTANDING = 20_000  # published, not yet acknowledged by the broker, per publisher
TS = "2026-01-01T00:00:00.000Z"  # replaced per run by ``payload_template``


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    username: str
    password: str

    @property
    def url(self) -> str:
        return f"mqtt://{quote(self.username)}:{quote(self.password)}@{self.host}:{self.port}"


def client(broker: Broker, client_id: str, *, v5: bool, manual_ack: bool = False) -> mqtt.Client:
    made = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
        manual_ack=manual_ack,
    )
    made.username_pw_set(broker.username, broker.password)
    return made


def connect(made: mqtt.Client, broker: Broker, *, v5: bool, clean: bool = False) -> None:
    if v5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 0 if clean else 3600
        properties.ReceiveMaximum = 2 * INFLIGHT
        made.connect(broker.host, broker.port, 60, clean_start=clean, properties=properties)
    else:
        made.connect(broker.host, broker.port, 60)


# --- the backlog -----------------------------------------------------------------------------


def payloads(devices: list[str], per_device: int, boot: int, ts: str) -> list[tuple[str, bytes]]:
    """Every device's telemetry, interleaved as a fleet sends it: (topic, payload)."""
    found = []
    for seq in range(1, per_device + 1):
        for index, device in enumerate(devices):
            metrics = {
                "temperature": 18.0 + (seq + index) % 120 / 10,
                "humidity": 40.0 + seq % 30,
                "battery_pct": 100.0 - seq % 100,
            }
            body = {"boot": boot, "seq": seq, "ts": ts, "metrics": metrics}
            found.append((f"devices/{device}/telemetry", orjson.dumps(body)))
    return found


def _publish_share(broker: Broker, messages: list[tuple[str, bytes]], rate: float) -> None:
    sender = client(broker, f"bench-publisher-{os.getpid()}", v5=False)
    sender.max_inflight_messages_set(INFLIGHT)
    sender.max_queued_messages_set(0)
    sender.connect(broker.host, broker.port, 60)
    sender.loop_start()
    started = time.monotonic()
    pending: collections.deque[mqtt.MQTTMessageInfo] = collections.deque()
    for count, (topic, payload) in enumerate(messages):
        if rate:
            ahead = started + count / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        pending.append(sender.publish(topic, payload, qos=1))
        while len(pending) > OUTSTANDING:  # packet ids are 16 bits: never reuse a pending one
            _acknowledged(pending.popleft())
    while pending:
        _acknowledged(pending.popleft())
    sender.disconnect()
    sender.loop_stop()


def _acknowledged(info: mqtt.MQTTMessageInfo) -> None:
    info.wait_for_publish(timeout=600)
    if not info.is_published():
        raise SystemExit("the broker did not acknowledge every message")


def publish(
    broker: Broker, messages: list[tuple[str, bytes]], *, processes: int, rate: float = 0.0
) -> float:
    """Publish ``messages`` (QoS 1, acknowledged by the broker) from ``processes`` processes,
    each taking every ``processes``-th message (a device's messages keep their order when the
    device count is a multiple of ``processes``); returns the seconds it took."""
    started = time.monotonic()
    workers = [
        multiprocessing.Process(
            target=_publish_share, args=(broker, messages[k::processes], rate / processes)
        )
        for k in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise SystemExit("a publisher failed")
    return time.monotonic() - started


# --- the baseline: bare paho-mqtt subscribers -------------------------------------------------


def bare_prepare(broker: Broker, names: list[str], *, v5: bool) -> None:
    """Create each bare subscriber's persistent session on the shared subscription."""
    for name in names:
        made = client(broker, name, v5=v5)
        connect(made, broker, v5=v5, clean=False)
        made.subscribe(BARE_SUBSCRIPTION, qos=1)
        for _ in range(20):
            made.loop(0.05)
        made.disconnect()


def bare_end(broker: Broker, names: list[str], *, v5: bool) -> None:
    """End the sessions (a clean start replaces them), so the group stops receiving."""
    for name in names:
        made = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=name,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else True,
        )
        made.username_pw_set(broker.username, broker.password)
        connect(made, broker, v5=v5, clean=True)
        made.loop(0.2)
        made.disconnect()


def _bare_drain(broker: Broker, name: str, expected: int, v5: bool, out: Any) -> None:
    """Resume the session and acknowledge every message (manual acks, like the worker)."""
    got = [0, 0.0]
    drainer = client(broker, name, v5=v5, manual_ack=True)

    def on_message(made: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        got[0] += 1
        made.ack(message.mid, message.qos)
        if got[0] >= expected:
            got[1] = time.time()
            made.disconnect()

    connected: list[float] = []
    drainer.on_message = on_message
    drainer.on_connect = lambda *args: connected.append(time.time())
    connect(drainer, broker, v5=v5)
    drainer.loop_forever()
    out.put((name, connected[0] if connected else 0.0, got[1], got[0]))


def bare_drain(broker: Broker, names: list[str], total: int, *, v5: bool) -> dict[str, Any]:
    """Drain ``total`` messages split evenly over the sessions ``names``, one process each."""
    queue: Any = multiprocessing.Queue()
    share = total // len(names)
    workers = [
        multiprocessing.Process(target=_bare_drain, args=(broker, name, share, v5, queue))
        for name in names
    ]
    for worker in workers:
        worker.start()
    found = [queue.get(timeout=900) for _ in workers]
    for worker in workers:
        worker.join()
    start = min(connected for _, connected, _, _ in found)
    end = max(finished for _, _, finished, _ in found)
    received = sum(count for *_, count in found)
    return {"messages": received, "seconds": end - start, "rate": received / (end - start)}


# --- the ingest workers --------------------------------------------------------------------------


@dataclass
class Worker:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, line: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.text():
            if self.process.poll() is not None:
                raise SystemExit(f"ingest worker {self.name} exited:\n{self.text()[-3000:]}")
            if time.monotonic() > deadline:
                raise SystemExit(f"ingest worker {self.name}: no {line!r}")
            time.sleep(0.05)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=300)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)


def start_worker(
    broker: Broker, name: str, directory: Path, *options: str, wait: bool = True
) -> Worker:
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / f"{name}-{time.monotonic_ns()}.log"
    env = dict(os.environ, MQTT_URL=broker.url, DJANGO_SETTINGS_MODULE="config.settings.prod")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "ingest", "--name", name, "--no-uplinks", *options],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    worker = Worker(name, process, log)
    if wait:
        worker.wait_for("subscribed to ")
    return worker
