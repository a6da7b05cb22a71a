"""Remote commands on the device: each command id runs once, whatever the delivery does.

The platform delivers a command at least once (MQTT QoS 1 on ``commands/<id>``, retries under
the same id until the device says ``received``, and ``GET /device/v1/commands`` for devices that
poll). The runner:

1. parses ``{"id", "name", "arguments", "timeout_s", "issued_at", "expires_at"}``;
2. ignores an id it has seen (``commands/seen.json`` in the state directory keeps the last
   ``REMEMBERED`` ids, written with fsync *before* the command runs: a crash in the middle
   never runs it twice; the platform then times it out);
3. drops an expired command unrun and reports ``failed`` with error ``"expired"`` (the platform
   records it as ``expired``);
4. reports ``received``, then ``in_progress``, runs the handler, and reports ``succeeded`` with
   the handler's output, or ``failed`` with the error.

Reports travel like telemetry (the on-disk outbox, QoS 1, ``commands/<id>/result``) or, for a
device without MQTT, as ``POST /device/v1/commands/<id>/result``.

A maker adds its own commands with the decorator (and lists them in the profile's command
catalog, with a JSON Schema for their arguments)::

    from agent.commands import CommandFailed, command

    @command("open_valve")
    async def open_valve(context, arguments):
        if arguments["percent"] > 80 and context.agent is None:
            raise CommandFailed("refused: no pressure reading")
        return {"opened": arguments["percent"]}

A handler may be a plain or an ``async`` function; it returns a JSON object (the ``output``)
and raises ``CommandFailed`` (or any exception) to fail.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import inspect
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .files import make_private_directory, read_json, write_json

log = logging.getLogger("agent.commands")

REMEMBERED = 1000
COMMAND_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
LOG_LINES = 200
MAX_REMEMBERED_REPORT = 4096  # bytes of JSON; a larger report is remembered without its output

Report = Callable[[str, dict[str, Any]], Any]  # (command id, {"status", "output", "error"})
Handler = Callable[["Context", dict[str, Any]], "dict[str, Any] | Awaitable[dict[str, Any]]"]


class CommandFailed(Exception):
    """Raised by a handler: the command fails with this message as its ``error``."""


@dataclass
class Context:
    """What a handler may use: the command and the device running it (None in tests)."""

    command_id: str
    name: str
    agent: Any = None
    after: list[Callable[[], Any]] = field(default_factory=list)  # run once reported


BUILTINS: dict[str, Handler] = {}


def command(name: str, registry: dict[str, Handler] | None = None) -> Callable[[Handler], Handler]:
    """Register a handler for the command ``name`` (in ``BUILTINS`` unless told otherwise)."""

    def register(handler: Handler) -> Handler:
        (BUILTINS if registry is None else registry)[name] = handler
        return handler

    return register


class Seen:
    """The last ``limit`` command ids and their last report, on disk: the memory that makes
    execution exactly once, and lets a repeated delivery be answered with the same report
    (a result lost on its way is then recovered by the platform's retry)."""

    def __init__(self, directory: Path, *, limit: int = REMEMBERED, fsync: bool = True) -> None:
        self.path = make_private_directory(directory) / "seen.json"
        self.limit, self.fsync = limit, fsync
        try:
            stored = dict(read_json(self.path))
        except (FileNotFoundError, ValueError, TypeError):
            stored = {}
        self._ids: collections.OrderedDict[str, dict[str, Any] | None] = collections.OrderedDict(
            stored
        )

    def __contains__(self, command_id: object) -> bool:
        return command_id in self._ids

    def last_report(self, command_id: str) -> dict[str, Any] | None:
        return self._ids.get(command_id)

    def add(self, command_id: str, report: dict[str, Any] | None = None) -> None:
        """Remember ``command_id`` (with its latest report) before anything else happens."""
        if report is not None and len(json.dumps(report)) > MAX_REMEMBERED_REPORT:
            report = {key: value for key, value in report.items() if key != "output"}
        self._ids[command_id] = report
        self._ids.move_to_end(command_id)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)
        write_json(self.path, dict(self._ids), fsync=self.fsync)


def _expired(document: dict[str, Any], now: dt.datetime) -> bool:
    try:
        expires = dt.datetime.fromisoformat(str(document.get("expires_at")))
    except ValueError:
        return False
    return expires <= now


class Runner:
    """Runs commands for one device; ``report`` sends a result (outbox or HTTPS)."""

    def __init__(
        self,
        seen: Seen,
        report: Report,
        *,
        agent: Any = None,
        handlers: dict[str, Handler] | None = None,
    ) -> None:
        self.seen, self.report, self.agent = seen, report, agent
        self.handlers = BUILTINS if handlers is None else handlers
        self.tasks: set[asyncio.Task[None]] = set()
        self.executed: list[str] = []  # ids run by this process (tests, diagnostics)

    def accept(self, payload: bytes | str) -> str | None:
        """Take one delivery; returns the id when it starts running, None when ignored."""
        try:
            document = json.loads(payload)
            command_id = str(document["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("commands: unreadable command %r", payload[:200])
            return None
        if not COMMAND_ID.match(command_id):
            return None
        if command_id in self.seen:
            last = self.seen.last_report(command_id)
            if last is not None:  # delivered again: the platform may have missed our report
                self.report(command_id, last)
            return None
        self.seen.add(command_id)
        if _expired(document, dt.datetime.now(dt.UTC)):
            log.info("commands: %s expired before it arrived, not run", command_id)
            self._report(command_id, {"status": "failed", "error": "expired"})
            return None
        task = asyncio.get_running_loop().create_task(self._run(command_id, document))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return command_id

    def _report(self, command_id: str, body: dict[str, Any]) -> None:
        self.seen.add(command_id, body)
        self.report(command_id, body)

    async def _run(self, command_id: str, document: dict[str, Any]) -> None:
        name = str(document.get("name", ""))
        arguments = document.get("arguments") or {}
        self._report(command_id, {"status": "received"})
        handler = self.handlers.get(name)
        if handler is None:
            self._report(command_id, {"status": "failed", "error": f"unknown command {name!r}"})
            return
        self._report(command_id, {"status": "in_progress"})
        context = Context(command_id=command_id, name=name, agent=self.agent)
        self.executed.append(command_id)
        log.info("commands: running %s (%s)", command_id, name)
        timeout = float(document.get("timeout_s") or 300)
        try:
            output = await asyncio.wait_for(_call(handler, context, arguments), timeout)
            self._report(command_id, {"status": "succeeded", "output": dict(output or {})})
        except TimeoutError:
            self._report(
                command_id, {"status": "failed", "error": f"timed out after {timeout:g} s"}
            )
        except Exception as error:  # a failing handler fails its command, never the agent
            log.info("commands: %s (%s) failed: %s", command_id, name, error)
            message = str(error) or type(error).__name__
            self._report(command_id, {"status": "failed", "error": message})
        for action in context.after:
            action()


async def _call(handler: Handler, context: Context, arguments: dict[str, Any]) -> Any:
    result = handler(context, arguments)
    return await result if inspect.isawaitable(result) else result


# --- built-ins ---------------------------------------------------------------------------------


class RecentLogs(logging.Handler):
    """The last ``LOG_LINES`` log lines of the agent, for ``upload_logs``."""

    def __init__(self, capacity: int = LOG_LINES) -> None:
        super().__init__()
        self.lines: collections.deque[str] = collections.deque(maxlen=capacity)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


RECENT_LOGS = RecentLogs()
logging.getLogger("agent").addHandler(RECENT_LOGS)


@command("ping")
def ping(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    """``pong`` and the device's clock, to measure the round trip."""
    return {"pong": True, "device_time": dt.datetime.now(dt.UTC).isoformat()}


@command("set_log_level")
def set_log_level(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    level = str(arguments.get("level", "")).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise CommandFailed(f"unknown log level {arguments.get('level')!r}")
    logger = logging.getLogger("agent")
    previous = logging.getLevelName(logger.getEffectiveLevel()).lower()
    logger.setLevel(level)
    return {"previous": previous, "level": level.lower()}


@command("upload_logs")
def upload_logs(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    """The last ``lines`` (default 50, at most 200) log lines, in the output."""
    wanted = max(1, min(LOG_LINES, int(arguments.get("lines", 50))))
    lines = list(RECENT_LOGS.lines)[-wanted:]
    return {"lines": lines, "count": len(lines)}


@command("reboot")
def reboot(context: Context, arguments: dict[str, Any]) -> dict[str, Any]:
    """Simulated: once the result is queued, the agent disconnects, counts a new boot and
    connects again (``Agent.reboot``)."""
    agent = context.agent
    if agent is None or not hasattr(agent, "reboot"):
        raise CommandFailed("this agent cannot reboot")
    context.after.append(agent.reboot)
    return {"rebooting": True, "boot": agent.boot}


# --- devices without MQTT: poll and post over HTTPS -------------------------------------------


@dataclass
class HttpsCommands:
    """Polls ``GET /device/v1/commands`` every ``interval`` seconds and posts each result to
    ``/device/v1/commands/<id>/result``. Results may arrive in any order: the platform moves a
    command forward only, so a late ``received`` after ``succeeded`` changes nothing."""

    platform_url: str
    headers: dict[str, str]
    transport: Any = None  # device_api.Transport
    interval: float = 30.0
    pending: set[asyncio.Task[Any]] = field(default_factory=set)

    def report(self, command_id: str, body: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._post(command_id, body))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _post(self, command_id: str, body: dict[str, Any]) -> None:
        from .device_api import PlatformUnreachable, post_json

        url = f"{self.platform_url.rstrip('/')}/device/v1/commands/{command_id}/result"
        for attempt in range(5):
            try:
                reply = await asyncio.to_thread(
                    post_json, url, body, transport=self.transport, headers=self.headers
                )
                if reply.status < 500:
                    return
            except PlatformUnreachable as error:
                log.warning("commands: result of %s not delivered: %s", command_id, error)
            await asyncio.sleep(min(60.0, 2.0**attempt))

    async def poll_once(self, runner: Runner) -> list[str]:
        """One poll; the ids that started running."""
        from .device_api import get_json

        url = f"{self.platform_url.rstrip('/')}/device/v1/commands"
        reply = await asyncio.to_thread(
            get_json, url, transport=self.transport, headers=self.headers
        )
        started = []
        for document in reply.body.get("commands", []) if reply.status == 200 else []:
            command_id = runner.accept(json.dumps(document))
            if command_id is not None:
                started.append(command_id)
        return started

    async def run(self, runner: Runner, stop: asyncio.Event) -> None:
        from .aio import sleep_unless
        from .device_api import PlatformUnreachable

        while not stop.is_set():
            try:
                await self.poll_once(runner)
            except PlatformUnreachable as error:
                log.warning("commands: poll failed: %s", error)
            if await sleep_unless(stop, self.interval):
                return


async def run_https(
    state: Any, stop: asyncio.Event, *, interval: float, ca_file: str | None
) -> None:
    """``python -m agent https-commands``: a device without MQTT running its commands, with
    its token (``Authorization: Bearer``) or its client certificate."""
    from .device_api import Transport

    identity = state.identity()
    token = identity.credential == "token"
    transport = Transport(
        ca_file=ca_file, client_certificate=None if token else str(state.credentials_file)
    )
    https = HttpsCommands(
        identity.platform_url,
        {"Authorization": f"Bearer {state.token()}"} if token else {},
        transport=transport,
        interval=interval,
    )
    runner = Runner(Seen(state.path / "commands", fsync=state.fsync), https.report)
    await https.run(runner, stop)
    await asyncio.gather(*runner.tasks, return_exceptions=True)
    await asyncio.gather(*https.pending, return_exceptions=True)
