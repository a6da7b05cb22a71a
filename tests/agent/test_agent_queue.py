"""What ``Agent.telemetry`` and ``Agent.event`` put in the outbox (no broker needed)."""

from __future__ import annotations

import json
from pathlib import Path

from agent.device import Agent, Options
from agent.state import BrokerAddress, Identity, StateDir

TS = "2026-11-30T10:00:00.000Z"


def enrolled(tmp_path: Path) -> StateDir:
    state = StateDir(tmp_path / "device")
    state.save_identity(
        Identity(
            device_id="dev-1",
            serial="SN-1",
            state="active",
            organization_id="org-1",
            credential="certificate",
            platform_url="https://fleet.example.com",
            broker=BrokerAddress("mqtt.example.com", 8883),
            topic_prefix="devices/dev-1/",
        )
    )
    return state


def test_samples_and_events_carry_boot_and_their_own_sequences(tmp_path: Path) -> None:
    agent = Agent(enrolled(tmp_path))
    agent.boot = 4

    first = agent.telemetry({"temperature_c": 21.5}, ts=TS)
    second = agent.telemetry({"temperature_c": 21.6}, ts=TS)
    event = agent.event("door.opened", message="Door 2", data={"door": 2})

    assert first is not None and second is not None and event is not None
    assert (first.topic, first.qos, first.retain, first.key) == (
        "devices/dev-1/telemetry",
        1,
        False,
        "telemetry:4:1",
    )
    assert json.loads(first.payload) == {
        "boot": 4,
        "seq": 1,
        "ts": TS,
        "metrics": {"temperature_c": 21.5},
    }
    assert json.loads(second.payload)["seq"] == 2
    body = json.loads(event.payload)
    assert (event.topic, event.key) == ("devices/dev-1/events", "events:4:1")
    assert {k: body[k] for k in ("boot", "seq", "type", "severity", "message", "data")} == {
        "boot": 4,
        "seq": 1,
        "type": "door.opened",
        "severity": "info",
        "message": "Door 2",
        "data": {"door": 2},
    }
    assert [m.key for m in agent.outbox] == ["telemetry:4:1", "telemetry:4:2", "events:4:1"]
    assert agent.counters.outbox == 3


def test_a_message_over_the_brokers_size_limit_is_refused_and_counted(tmp_path: Path) -> None:
    agent = Agent(enrolled(tmp_path), Options(max_message_bytes=100))
    agent.boot = 1

    assert agent.telemetry({"blob": "x" * 100}, ts=TS) is None
    small = agent.telemetry({"t": 1}, ts=TS)

    assert small is not None
    assert json.loads(small.payload)["seq"] == 2  # the refused sample kept its number
    assert (agent.counters.dropped, len(agent.outbox)) == (1, 1)


def test_a_full_outbox_drops_new_samples_and_counts_them(tmp_path: Path) -> None:
    agent = Agent(enrolled(tmp_path), Options(outbox_limit=2))
    agent.boot = 1

    kept = [agent.telemetry({"n": n}, ts=TS) for n in range(3)]

    assert [m is not None for m in kept] == [True, True, False]
    assert (agent.counters.dropped, agent.counters.outbox, len(agent.outbox)) == (1, 2, 2)


def test_a_restarted_agent_counts_what_its_outbox_still_holds(tmp_path: Path) -> None:
    state = enrolled(tmp_path)
    before = Agent(state)
    before.boot = 1
    before.telemetry({"n": 1}, ts=TS)
    before.telemetry({"n": 2}, ts=TS)

    after = Agent(state)

    assert after.counters.outbox == 2
    assert [json.loads(m.payload)["metrics"] for m in after.outbox] == [{"n": 1}, {"n": 2}]
