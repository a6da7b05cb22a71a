"""The agent's command runner: each id once, expired ones dropped, built-ins, a maker's own
commands, and the HTTPS poll against the real platform."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from typing import Any

import pytest

from agent.commands import BUILTINS, CommandFailed, HttpsCommands, Runner, Seen, command


def payload(command_id: str, name: str, expires_in: float = 3600, **arguments: Any) -> bytes:
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in)
    body = {"id": command_id, "name": name, "arguments": arguments, "timeout_s": 5}
    return json.dumps({**body, "expires_at": expires.isoformat()}).encode()


def runner_in(tmp_path, handlers=None, agent=None) -> tuple[Runner, list[tuple[str, dict]]]:
    reports: list[tuple[str, dict]] = []
    seen = Seen(tmp_path / "commands", fsync=False)
    runner = Runner(seen, lambda i, body: reports.append((i, body)), handlers=handlers, agent=agent)
    return runner, reports


async def settle(runner: Runner) -> None:
    while runner.tasks:
        await asyncio.gather(*runner.tasks)


def test_a_command_id_runs_once_even_across_restarts_and_a_repeat_gets_the_last_report(tmp_path):
    async def scenario() -> list[tuple[str, dict]]:
        runner, reports = runner_in(tmp_path)
        assert runner.accept(payload("c-1", "ping")) == "c-1"
        assert runner.accept(payload("c-1", "ping")) is None  # before it even finished
        await settle(runner)
        restarted, again = runner_in(tmp_path)  # a new process, the same state directory
        assert restarted.accept(payload("c-1", "ping")) is None
        assert restarted.executed == []
        return reports + again

    reports = asyncio.run(scenario())
    statuses = [body["status"] for _, body in reports]
    assert statuses == ["received", "in_progress", "succeeded", "succeeded"]
    assert reports[2][1]["output"]["pong"] is True
    assert reports[3] == reports[2]


def test_an_expired_command_is_not_run_and_reported_failed_expired(tmp_path):
    async def scenario() -> tuple[Runner, list[tuple[str, dict]]]:
        runner, reports = runner_in(tmp_path)
        assert runner.accept(payload("old", "ping", expires_in=-1)) is None
        await settle(runner)
        return runner, reports

    runner, reports = asyncio.run(scenario())
    assert reports == [("old", {"status": "failed", "error": "expired"})]
    assert runner.executed == []


def test_a_makers_command_is_registered_with_the_decorator(tmp_path):
    mine: dict[str, Any] = {}

    @command("open_valve", registry=mine)
    async def open_valve(context, arguments):
        if arguments["percent"] > 80:
            raise CommandFailed("too far")
        return {"opened": arguments["percent"]}

    async def scenario() -> list[tuple[str, dict]]:
        runner, reports = runner_in(tmp_path, handlers=mine)
        runner.accept(payload("a", "open_valve", percent=40))
        runner.accept(payload("b", "open_valve", percent=90))
        runner.accept(payload("c", "ping"))
        await settle(runner)
        return reports

    finals = {i: body for i, body in asyncio.run(scenario()) if body["status"] != "in_progress"}
    assert finals == {
        "a": {"status": "succeeded", "output": {"opened": 40}},
        "b": {"status": "failed", "error": "too far"},
        "c": {"status": "failed", "error": "unknown command 'ping'"},
    }
    assert "open_valve" not in BUILTINS


def test_the_built_ins_change_the_log_level_upload_logs_and_reboot(tmp_path):
    class Device:
        boot = 3
        rebooted = 0

        def reboot(self) -> None:
            self.rebooted += 1

    device = Device()
    logger = logging.getLogger("agent")
    before = logger.level

    async def scenario() -> list[tuple[str, dict]]:
        runner, reports = runner_in(tmp_path, agent=device)
        runner.accept(payload("l", "set_log_level", level="warning"))
        await settle(runner)
        logging.getLogger("agent.test").warning("a line to upload")
        runner.accept(payload("u", "upload_logs", lines=1))
        runner.accept(payload("r", "reboot"))
        runner.accept(payload("x", "set_log_level", level="loud"))
        await settle(runner)
        return reports

    try:
        finals = {
            i: body
            for i, body in asyncio.run(scenario())
            if body["status"] in ("succeeded", "failed")
        }
        assert logger.level == logging.WARNING
    finally:
        logger.setLevel(before)
    assert finals["l"]["output"]["level"] == "warning"
    assert finals["u"]["output"]["count"] == 1
    assert finals["u"]["output"]["lines"][0].endswith("WARNING agent.test: a line to upload")
    assert finals["r"] == {"status": "succeeded", "output": {"rebooting": True, "boot": 3}}
    assert device.rebooted == 1
    assert finals["x"] == {"status": "failed", "error": "unknown log level 'loud'"}


@pytest.mark.django_db(transaction=True)
def test_a_device_without_mqtt_polls_and_posts_its_results(tmp_path, live_server, tree):
    from apps.core.actors import SYSTEM
    from apps.devices.pki import services as credential_services
    from tests.commands.support import commands_of, make_device, make_version, run

    device = make_device(make_version(tree["acme"]), tree["acme"])
    _, token = credential_services.device_token_create(actor=SYSTEM, device=device)
    command_row = commands_of(run(tree["acme"], [device], command="ping"))[device.pk]
    https = HttpsCommands(live_server.url, {"Authorization": f"Bearer {token}"}, interval=0.1)

    async def scenario() -> list[str]:
        seen = Seen(tmp_path / "commands", fsync=False)
        runner = Runner(seen, https.report)
        started = await https.poll_once(runner)
        await settle(runner)
        while https.pending:
            await asyncio.gather(*https.pending)
        return started

    assert asyncio.run(scenario()) == [str(command_row.pk)]
    command_row.refresh_from_db()
    assert command_row.status == "succeeded"
    assert command_row.output["pong"] is True


@pytest.mark.django_db(transaction=True)
def test_the_https_commands_cli_runs_a_polled_command_once(tmp_path, live_server, tree):
    import subprocess
    import sys

    from agent.state import BrokerAddress, Identity, StateDir
    from apps.core.actors import SYSTEM
    from apps.devices.pki import services as credential_services
    from tests.agent.support import REPOSITORY
    from tests.commands.support import commands_of, make_device, make_version, run

    device = make_device(make_version(tree["acme"]), tree["acme"])
    _, token = credential_services.device_token_create(actor=SYSTEM, device=device)
    state = StateDir(tmp_path / "device")
    state.save_token(token)
    state.save_identity(
        Identity(
            device_id=str(device.pk),
            serial=device.serial,
            state="active",
            organization_id=str(device.organization_id),
            credential="token",
            platform_url=live_server.url,
            broker=BrokerAddress(host="127.0.0.1", port=9),
            topic_prefix=f"devices/{device.pk}/",
        )
    )
    command_row = commands_of(
        run(tree["acme"], [device], command="set_log_level", arguments={"level": "warning"})
    )[device.pk]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "https-commands",
            "--state-dir",
            str(state.path),
            "--interval",
            "0.2",
            "--duration",
            "3",
        ],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(f"commands: running {command_row.pk}") == 1  # polled ~15 times
    command_row.refresh_from_db()
    assert command_row.status == "succeeded"
    assert command_row.output == {"previous": "info", "level": "warning"}
