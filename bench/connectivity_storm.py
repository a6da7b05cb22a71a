"""Client process of the reconnect-storm benchmark (``bench/connectivity.py``): no Django, only
the reference agent (``agent/``) and the standard library.

It drives the enrolled state directories ``<state-dir>/<prefix>NNNNN/`` (written by the
coordinator with the same files an enrollment leaves: ``identity.json``, ``device.pem``,
``ca.pem``) in one of two modes, talking to the coordinator in JSON lines (events on stdout,
commands on stdin; ``at`` values are ``time.monotonic()``, one clock for every process here):

- ``storm``: the agent's own fleet (``agent.simulate.Fleet``, the code behind ``python -m agent
  simulate``: every device a real ``agent.device.Agent`` with its connection pacing, persistent
  session, status and last will, heartbeats, backoff and jitter). It reports ``connected`` once
  every device has its CONNACK, waits for ``mark`` (sent just before the broker is stopped),
  then reports ``reconnected`` with the curve of reconnections (how many devices had their
  CONNACK again, and when), and stops on ``stop``.
- ``handshake``: the baseline, a TLS handshake alone per device (no MQTT): the same client
  certificate and CA in an ``ssl.SSLContext`` built as ``Agent._tls_context`` builds it, the
  same pacing (``agent.aio.ConnectGate``, same concurrency and rate) and, like aiomqtt's
  connect, a blocking connect + handshake in a worker thread. Each connection is closed once
  the handshake is done (TLS 1.2: the server has verified the client's certificate and CRL).

Usage: python bench/connectivity_storm.py storm|handshake --state-dir DIR --prefix P --count N
       [--concurrency C] [--rate R] [--timeout S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import ssl
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.aio import ConnectGate  # noqa: E402
from agent.simulate import Fleet, FleetOptions, raise_open_files_limit  # noqa: E402
from agent.state import StateDir  # noqa: E402

POLL = 0.01  # seconds between two looks at the fleet's counters


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Commands:
    """Lines from the coordinator, read by a thread of their own (not the fleet's pool, whose
    threads are sized for connection attempts)."""

    def __init__(self) -> None:
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="commands")

    async def expect(self, command: str) -> None:
        loop = asyncio.get_running_loop()
        line = await loop.run_in_executor(self._reader, sys.stdin.readline)
        if line.strip() != command:
            raise SystemExit(f"expected {command!r} from the coordinator, got {line!r}")


async def until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL)
    return True


# --- storm: the agent's fleet ------------------------------------------------------------------


async def storm(arguments: argparse.Namespace) -> int:
    options = FleetOptions(
        count=arguments.count,
        url="http://127.0.0.1:9",  # never used: every state directory is already enrolled
        claim_token="unused",
        state_dir=arguments.state_dir,
        serial_prefix=arguments.prefix,
        telemetry_interval=0.0,  # status and heartbeats only: the storm is about connections
        connect_rate=arguments.rate,
        connect_concurrency=arguments.concurrency,
        summary_interval=30.0,
    )
    fleet, stop, commands = Fleet(options, out=sys.stderr), asyncio.Event(), Commands()
    counters, count = fleet.counters, arguments.count
    running = asyncio.create_task(fleet.run(stop))
    try:
        if not await until(lambda: counters.connected >= count, arguments.timeout):
            emit("failed", stage="connect", connected=counters.connected)
            return 1
        emit("connected", at=time.monotonic(), connects=counters.connects)
        await commands.expect("mark")
        before, failures = counters.connects, counters.connect_failures
        cpu = time.process_time()
        emit("marked", at=time.monotonic(), connected=counters.connected)
        curve = await _reconnects(lambda: counters.connects - before, count, arguments.timeout)
        emit(
            "reconnected",
            curve=curve,
            reconnects=counters.connects - before,
            connected=counters.connected,
            failed_attempts=counters.connect_failures - failures,
            cpu=time.process_time() - cpu,
        )
        await commands.expect("stop")
    finally:
        stop.set()
        await running
    emit("stopped")
    return 0


async def _reconnects(
    done: Callable[[], int], count: int, timeout: float
) -> list[tuple[float, int]]:
    """How many devices had reconnected, and when: one (time, count) pair per change, until all
    ``count`` have (the coordinator merges the curves of its client processes)."""
    curve: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = done()
        if not curve or value != curve[-1][1]:
            curve.append((time.monotonic(), value))
        if value >= count:
            break
        await asyncio.sleep(POLL)
    return curve


# --- handshake: TLS alone, same certificates and pacing ------------------------------------------


def tls_context(state: StateDir) -> ssl.SSLContext:
    """What ``Agent._tls_context`` builds: verify the broker with the platform's root (hostname
    included), present the device's key and certificate chain."""
    context = ssl.create_default_context(cafile=str(state.ca_file))
    context.load_cert_chain(str(state.credentials_file))
    return context


def handshake(context: ssl.SSLContext, host: str, port: int) -> None:
    with socket.create_connection((host, port), timeout=30) as raw:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the agent's client
        with context.wrap_socket(raw, server_hostname=host):
            pass  # the handshake is done in wrap_socket; closing is all that is left


async def handshakes(arguments: argparse.Namespace) -> int:
    raise_open_files_limit()
    states = [
        StateDir(arguments.state_dir / f"{arguments.prefix}{index:05d}", fsync=False)
        for index in range(1, arguments.count + 1)
    ]
    broker = states[0].identity().broker
    # Built before the timed part, as a reconnecting agent already holds its context.
    contexts = [tls_context(state) for state in states]
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(arguments.concurrency, thread_name_prefix="tls"))
    gate = ConnectGate(concurrency=arguments.concurrency, rate=arguments.rate)
    emit("ready")
    await Commands().expect("go")

    async def one(context: ssl.SSLContext) -> bool:
        async with gate:
            try:
                await asyncio.to_thread(handshake, context, broker.host, broker.port)
            except OSError as error:  # ssl.SSLError is an OSError
                print(f"handshake failed: {error}", file=sys.stderr)
                return False
            return True

    started, cpu = time.monotonic(), time.process_time()
    results = await asyncio.gather(*(one(context) for context in contexts))
    finished, cpu = time.monotonic(), time.process_time() - cpu
    emit("handshakes", started=started, finished=finished, ok=sum(results), cpu=cpu)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("storm", "handshake"))
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    arguments = parser.parse_args()
    run = storm if arguments.mode == "storm" else handshakes
    return asyncio.run(run(arguments))


if __name__ == "__main__":
    sys.exit(main())
