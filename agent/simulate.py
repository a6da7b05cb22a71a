"""A fleet of virtual devices in one asyncio process, for demos, tests and benchmarks.

Each virtual device is exactly the real agent (``enroll`` then ``device.Agent``) with its own
state directory (``<state-dir>/<serial>/``), key, certificate, MQTT connection and outbox; only
its sensors are synthetic. A second run over the same state directory reuses the credentials
(no enrollment) and counts a new boot, which is how a reconnect storm is measured.

What it takes to hold ten thousand TLS connections in one process:

- one file descriptor per connection: the soft ``RLIMIT_NOFILE`` is raised to the hard limit;
- connection attempts are paced (``ConnectGate``: a bounded number of handshakes in flight and a
  rate of new attempts); aiomqtt runs each blocking connect + handshake in a worker thread, so
  the thread pool is sized to that bound;
- enrollment requests are bounded too (the platform rate-limits per source and per token, and
  a 429 is waited out as ``Retry-After`` says);
- the outbox skips ``fsync`` by default (``--fsync`` turns it on): the files are still replaced
  atomically, which covers a crash of this process, but a real device's flash is not shared by
  ten thousand writers."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import resource
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .aio import ConnectGate
from .device import Agent, Counters, Options
from .device_api import Transport
from .enroll import Enrollment, EnrollmentError, Proof, enroll
from .metrics import SyntheticSensors
from .state import StateDir

SHUTDOWN_GRACE = 10.0  # seconds for every device to say "offline" and disconnect


@dataclass(frozen=True)
class FleetOptions:
    count: int
    url: str
    claim_token: str
    state_dir: Path
    serial_prefix: str = "SIM-"
    telemetry_interval: float = 30.0
    heartbeat_interval: float | None = None  # None: the enrollment's heartbeat policy
    connect_rate: float = 500.0  # new connection attempts per second
    connect_concurrency: int = 32  # TLS handshakes in flight
    enroll_concurrency: int = 8  # enrollment requests in flight
    summary_interval: float = 5.0
    duration: float | None = None  # stop after this many seconds; None: until SIGINT/SIGTERM
    fsync: bool = False
    platform_ca_file: str | None = None
    backoff_cap: float = 120.0
    # Demos: every ``outage_every`` seconds the next device in turn loses power for
    # ``outage_seconds`` (its last will says "offline"), then boots again. 0: never.
    outage_every: float = 0.0
    outage_seconds: float = 90.0


def raise_open_files_limit() -> int:
    """Raise the soft limit on open files to the hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


class Fleet:
    """N virtual devices; ``await Fleet(options).run(stop)`` returns the final counters."""

    def __init__(self, options: FleetOptions, *, out: TextIO = sys.stdout) -> None:
        self.options = options
        self.out = out
        self.counters = Counters()
        self.refused = 0
        self.started = time.monotonic()
        self.milestones: dict[str, float] = {}
        self.power: dict[int, asyncio.Event] = {}  # per device: set = leave (stop or outage)

    async def run(self, stop: asyncio.Event) -> Counters:
        options = self.options
        limit = raise_open_files_limit()
        if options.count + 100 > limit:
            self._print(f"warning: {options.count} devices but only {limit} file descriptors")
        workers = options.connect_concurrency + options.enroll_concurrency + 4
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(workers, thread_name_prefix="agent-io"))
        gate = ConnectGate(concurrency=options.connect_concurrency, rate=options.connect_rate)
        enroll_slots = asyncio.Semaphore(options.enroll_concurrency)
        self.started = time.monotonic()
        devices = [
            asyncio.create_task(self._device(index, stop, gate, enroll_slots))
            for index in range(1, options.count + 1)
        ]
        reporter = asyncio.create_task(self._report())
        outages = asyncio.create_task(self._outages(stop))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), options.duration)
        stop.set()
        _, unfinished = await asyncio.wait(devices, timeout=SHUTDOWN_GRACE)
        for task in [*unfinished, reporter, outages]:
            task.cancel()
        await asyncio.gather(*unfinished, reporter, outages, return_exceptions=True)
        self._print(self.summary())
        return self.counters

    async def _device(
        self, index: int, stop: asyncio.Event, gate: ConnectGate, enroll_slots: asyncio.Semaphore
    ) -> None:
        options = self.options
        serial = f"{options.serial_prefix}{index:05d}"
        # Staggered starts: each start reads files and queues work for the thread pool, and
        # ten thousand at once would keep the first connections waiting behind the last.
        await asyncio.sleep((index - 1) / options.connect_rate)
        state = StateDir(options.state_dir / serial, fsync=options.fsync)
        if not state.is_enrolled():
            request = Enrollment(
                url=options.url,
                serial=serial,
                proof=Proof(claim_token=options.claim_token),
                transport=Transport(ca_file=options.platform_ca_file),
            )
            async with enroll_slots:
                try:
                    await enroll(state, request)
                except EnrollmentError as error:
                    self.refused += 1
                    self._print(f"{serial}: {error}")
                    return
        self.counters.enrolled += 1
        self._milestone("enrolled", self.counters.enrolled)
        sensors = SyntheticSensors(serial)
        while not stop.is_set():
            power = self.power[index] = asyncio.Event()
            agent = Agent(
                state,
                self._agent_options(),
                sensors=sensors,
                vitals=sensors.vitals,
                counters=self.counters,
                gate=gate,
            )
            await agent.run(power)
            if not stop.is_set():  # a power cut: stay dark for a while, then boot again
                self._print(f"{serial}: power cut for {self.options.outage_seconds:.0f} s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.options.outage_seconds)

    async def _outages(self, stop: asyncio.Event) -> None:
        """Cut the power of one device after another (``outage_every``); ``stop`` reaches
        every device through its power switch."""
        victims = itertools.cycle(range(1, self.options.count + 1))
        every = self.options.outage_every
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every if every > 0 else None)
            if stop.is_set():
                break
            if (switch := self.power.get(next(victims))) is not None:
                switch.set()
        for switch in self.power.values():
            switch.set()

    def _agent_options(self) -> Options:
        return Options(
            telemetry_interval=self.options.telemetry_interval,
            heartbeat_interval=self.options.heartbeat_interval,
            fsync=self.options.fsync,
            spread_start=True,
            platform_ca_file=self.options.platform_ca_file,
            backoff_cap=self.options.backoff_cap,
        )

    async def _report(self) -> None:
        next_summary = self.options.summary_interval
        while True:
            await asyncio.sleep(0.1)  # also the resolution of the "all connected" milestone
            self._milestone("connected", self.counters.connected)
            if time.monotonic() - self.started >= next_summary:
                self._print(self.summary())
                next_summary += self.options.summary_interval

    def _milestone(self, name: str, value: int) -> None:
        if value >= self.options.count and name not in self.milestones:
            self.milestones[name] = time.monotonic() - self.started
            self._print(f"all {self.options.count} devices {name} in {self.milestones[name]:.1f} s")

    def summary(self) -> str:
        counters = self.counters
        return (
            f"[{time.monotonic() - self.started:8.1f}s] "
            f"enrolled {counters.enrolled}/{self.options.count} "
            f"connected {counters.connected} "
            f"published {counters.published} acked {counters.acked} "
            f"outbox {counters.outbox} "
            f"connect-failures {counters.connect_failures} "
            f"refused {self.refused} dropped {counters.dropped}"
        )

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


async def simulate(options: FleetOptions, *, out: TextIO = sys.stdout) -> Counters:
    """Run the fleet until SIGINT/SIGTERM or ``options.duration``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return await Fleet(options, out=out).run(stop)
