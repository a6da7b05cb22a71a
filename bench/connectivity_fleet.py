"""The reconnect storm of ``bench/connectivity.py``, coordinator side: the devices, the broker,
and the client processes (``bench/connectivity_storm.py``).

Devices are written set-based (``bulk_create``, already ``active``: a starting state, as tests
write one); each gets a key and a certificate from the platform's issuance
(``issuance.device_certificate`` + ``issuance.record``) and a state directory with exactly what
an enrollment leaves there (``agent.state``: identity, key + chain, root CA), so the agent runs
them unchanged, without enrolling. The broker is the test suite's ``MqttBroker``
(``tests/broker_support.py``): Mosquitto with the configuration ``apps.devices.broker``
generates (persistence on), on free ports, stopped by PID.

One measurement of N devices, in P client processes (each with its share of the devices and of
the pacing, so the totals stay the same whatever P): N TLS handshakes alone, the storm, N TLS
handshakes alone again (the faster of the two is the baseline).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from agent.device import Options
from agent.simulate import FleetOptions, raise_open_files_limit
from agent.state import BrokerAddress, Identity, StateDir

__all__ = ["broker", "create", "measure", "raise_open_files_limit"]

CLIENT = Path(__file__).resolve().with_name("connectivity_storm.py")
PREFIX = "D"
DEFAULTS = FleetOptions(count=0, url="", claim_token="", state_dir=Path())
CONCURRENCY = DEFAULTS.connect_concurrency  # the agent simulator's own pacing
RATE = DEFAULTS.connect_rate
SETTLE = Options().stable_after + 1  # every session "stable": the agents' backoff starts over
SHARES = (0.5, 0.9, 0.99, 1.0)


def create(world: Any, count: int, directory: Path, running: Any) -> list[Path]:
    """``count`` active devices of the world's customer with certificates and state directories
    (the agent's files) pointing at ``running``'s device listener."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from django.db import transaction

    from apps.devices.models import Device
    from apps.devices.pki import authorities, certs, issuance

    shutil.rmtree(directory, ignore_errors=True)
    devices = Device.objects.bulk_create(
        (
            Device(
                organization=world.customer,
                manufacturer=world.maker,
                profile_version=world.version,
                serial=f"STORM-{index:05d}",
                state="active",
            )
            for index in range(1, count + 1)
        ),
        batch_size=2_000,
    )
    root_pem = authorities.root_certificate_pem()
    address = BrokerAddress(running.host, running.device_port, running.token_port, tls=True)
    paths = []
    with transaction.atomic():
        for device in devices:
            key = ec.generate_private_key(ec.SECP256R1())
            certificate, signer = issuance.device_certificate(
                device=device, public_key=key.public_key()
            )
            issuance.record(device=device, certificate=certificate, issuer=signer.authority)
            chain = certs.to_pem(certificate) + signer.chain_pem()
            paths.append(
                write_state(directory / device.serial, device, key, chain, root_pem, address)
            )
    return paths


def write_state(
    path: Path, device: Any, key: Any, chain: str, root_pem: str, address: BrokerAddress
) -> Path:
    state = StateDir(path, fsync=False)
    state.save_certificate(key, chain)
    state.save_ca(root_pem)
    state.save_identity(  # last, as at enrollment: its presence means "enrolled"
        Identity(
            device_id=str(device.pk),
            serial=device.serial,
            state="active",
            organization_id=str(device.organization_id),
            credential="certificate",
            platform_url="http://127.0.0.1:9",  # no renewal is due: never contacted
            broker=address,
            topic_prefix=f"devices/{device.pk}/",
            heartbeat_interval=60.0,
        )
    )
    return path


@contextlib.contextmanager
def broker(directory: Path, world: Any) -> Iterator[Any]:
    """A running Mosquitto with the platform's configuration, built from the bench database."""
    from apps.devices.pki import authorities
    from tests.broker_support import MqttBroker, free_port

    shutil.rmtree(directory, ignore_errors=True)
    authorities.intermediate(world.customer)  # its CRL must be in crl.pem before devices connect
    running = MqttBroker(
        directory=directory,
        device_port=free_port(),
        token_port=free_port(),
        platform_port=free_port(),
        platform_username="fleetops-bench",
        platform_password=secrets.token_urlsafe(24),
    )
    running.write_config()
    running.start()
    try:
        yield running
    finally:
        running.stop()


def measure(
    running: Any,
    pool: list[Path],
    directory: Path,
    *,
    processes: int,
    concurrency: int = CONCURRENCY,
    rate: float = RATE,
) -> dict[str, Any]:
    """Handshakes alone, the storm, handshakes alone again, for the devices of ``pool``, in
    ``processes`` client processes sharing ``concurrency`` handshakes in flight and ``rate`` new
    connections per second."""
    size = len(pool)
    groups = layout(pool, directory, processes)
    pacing = {"concurrency": max(1, concurrency // processes), "rate": rate / processes}
    timeout = 120 + size / 25
    found: dict[str, Any] = {"devices": size, "processes": processes}
    found |= {"concurrency": pacing["concurrency"] * processes, "rate": rate}
    found["load"] = os.getloadavg()[0]
    runs = [handshakes(running, groups, pacing, timeout, directory)]
    found["storm"] = storm(running, groups, pacing, timeout, directory)
    runs.append(handshakes(running, groups, pacing, timeout, directory))
    done = [run for run in runs if run is not None]
    if done:
        best = min(done, key=lambda run: run["seconds"])
        found["handshakes"] = best | {
            "runs": [run["seconds"] for run in done],
            "ok": min(run["ok"] for run in done),
        }
    return found


def layout(pool: list[Path], directory: Path, processes: int) -> list[tuple[Path, int]]:
    """Each client process's share of the devices as ``<dir>/p<k>/D00001...`` (symbolic links
    to the state directories, the names ``agent.simulate.Fleet`` expects)."""
    shutil.rmtree(directory, ignore_errors=True)
    groups = []
    for number in range(processes):
        share = pool[number::processes]
        folder = directory / f"p{number}"
        folder.mkdir(parents=True)
        for index, path in enumerate(share, 1):
            (folder / f"{PREFIX}{index:05d}").symlink_to(path.resolve())
        groups.append((folder, len(share)))
    return groups


def cpu_seconds(process: subprocess.Popen[bytes] | None) -> float:
    """User + system CPU time a running process has used so far (Linux ``/proc``)."""
    if process is None:
        return 0.0
    fields = Path(f"/proc/{process.pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def handshakes(
    running: Any,
    groups: list[tuple[Path, int]],
    pacing: dict[str, Any],
    timeout: float,
    logs: Path,
) -> dict[str, Any] | None:
    workers = [Client("handshake", group, pacing, timeout, logs) for group in groups]
    with contextlib.ExitStack() as stack:
        for worker in workers:
            stack.callback(worker.close)
        if not all(worker.expect("ready", timeout) for worker in workers):
            return None
        broker_cpu = cpu_seconds(running.process)
        for worker in workers:
            worker.send("go")
        done = [worker.expect("handshakes", timeout) for worker in workers]
        broker_cpu = cpu_seconds(running.process) - broker_cpu
    events = [event for event in done if event]
    if len(events) < len(done):
        return None
    started = min(event["started"] for event in events)
    return {
        "seconds": max(event["finished"] for event in events) - started,
        "ok": sum(event["ok"] for event in events),
        "broker_cpu": broker_cpu,
        "clients_cpu": sum(event["cpu"] for event in events),
    }


def storm(
    running: Any,
    groups: list[tuple[Path, int]],
    pacing: dict[str, Any],
    timeout: float,
    logs: Path,
) -> dict[str, Any] | None:
    """Every device connected; SIGTERM the broker, start it again; until all reconnected."""
    workers = [Client("storm", group, pacing, timeout, logs) for group in groups]
    with contextlib.ExitStack() as stack:
        for worker in workers:
            stack.callback(worker.close)
        if not all(worker.expect("connected", timeout) for worker in workers):
            return None
        time.sleep(SETTLE)
        for worker in workers:
            worker.send("mark")
        if not all(worker.expect("marked", 30) for worker in workers):
            return None
        moments = {"sigterm": time.monotonic()}
        running.stop()
        moments["stopped"] = time.monotonic()
        running.start()
        moments["listening"] = time.monotonic()
        done = [worker.expect("reconnected", timeout) for worker in workers]
        moments["broker_cpu"] = cpu_seconds(running.process)  # since its start: the storm's
        for worker in workers:
            worker.send("stop")
            worker.expect("stopped", 60)
    if not all(done):
        return None
    expected = sum(count for _, count in groups)
    return storm_figures(moments, [event for event in done if event], expected)


def storm_figures(
    moments: dict[str, float], done: list[dict[str, Any]], expected: int
) -> dict[str, Any]:
    """Merge the client processes' reconnection curves into the fleet's milestones (shares of
    the ``expected`` devices)."""
    size = sum(event["connected"] for event in done)
    reconnects = sum(event["reconnects"] for event in done)
    changes = sorted(
        (at, number, value) for number, event in enumerate(done) for at, value in event["curve"]
    )
    latest = [0] * len(done)
    reached: dict[float, float] = {}
    for at, number, value in changes:
        latest[number] = value
        for share in SHARES:
            if share not in reached and sum(latest) >= share * expected:
                reached[share] = at - moments["listening"]
    figures = {
        "stopped": moments["stopped"] - moments["sigterm"],
        "restarted": moments["listening"] - moments["sigterm"],
        "reconnects": reconnects,
        "connected": size,
        "failed_attempts": sum(event["failed_attempts"] for event in done),
        "broker_cpu": moments["broker_cpu"],
        "clients_cpu": sum(event["cpu"] for event in done),
    }
    if 1.0 not in reached:
        return figures
    return figures | {
        "seconds": reached[1.0],
        "p50": reached[0.5],
        "p90": reached[0.9],
        "p99": reached[0.99],
        "since_sigterm": reached[1.0] + figures["restarted"],
    }


class Client:
    """One client process (``connectivity_storm.py``): commands in, JSON events out."""

    def __init__(
        self, mode: str, group: tuple[Path, int], pacing: dict[str, Any], timeout: float, logs: Path
    ) -> None:
        folder, count = group
        command = [sys.executable, str(CLIENT), mode, "--state-dir", str(folder)]
        command += ["--prefix", PREFIX, "--count", str(count), "--timeout", str(timeout)]
        command += ["--concurrency", str(pacing["concurrency"]), "--rate", str(pacing["rate"])]
        self.log = (logs / f"{folder.name}-{mode}.log").open("ab")
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True).start()

    def _read(self, stream: IO[str] | None) -> None:
        for line in stream or ():
            with contextlib.suppress(ValueError):
                self.events.put(json.loads(line))
        self.events.put({"event": "exited"})

    def expect(self, event: str, timeout: float) -> dict[str, Any] | None:
        """The next event if it is ``event``; None (and why, printed) otherwise."""
        try:
            found = self.events.get(timeout=timeout)
        except queue.Empty:
            found = {"event": "nothing", "seconds": timeout}
        if found["event"] != event:
            print(
                f"    client {self.process.pid}: expected {event!r}, got {found} ({self.log.name})"
            )
            return None
        return found

    def send(self, command: str) -> None:
        if self.process.stdin and self.process.poll() is None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()

    def close(self) -> None:
        if self.process.stdin:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
