from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.outbox import Outbox, OutboxFull

REPOSITORY = Path(__file__).resolve().parents[2]


def put_numbers(outbox: Outbox, numbers: range) -> None:
    for number in numbers:
        outbox.put("devices/d/telemetry", json.dumps({"seq": number}), key=f"telemetry:1:{number}")


def pending_numbers(outbox: Outbox) -> list[int]:
    return [json.loads(message.payload)["seq"] for message in outbox]


def test_it_hands_out_messages_in_the_order_they_were_put(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    put_numbers(outbox, range(1, 6))
    sent = []
    while (message := outbox.first()) is not None:
        sent.append(json.loads(message.payload)["seq"])
        outbox.ack(message)
    assert sent == [1, 2, 3, 4, 5]
    assert len(outbox) == 0
    assert list((tmp_path / "outbox").iterdir()) == []


def test_one_file_per_message_readable_by_its_owner_only(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    message = outbox.put("devices/d/events", '{"type":"x"}', qos=1, retain=False, key="events:1:1")
    assert message is not None
    assert message.path.name == "000000000001.json"
    assert stat.S_IMODE(message.path.stat().st_mode) == 0o600
    assert json.loads(message.path.read_text()) == {
        "topic": "devices/d/events",
        "payload": '{"type":"x"}',
        "qos": 1,
        "retain": False,
        "key": "events:1:1",
    }


def test_a_restart_replays_exactly_what_was_not_acknowledged_in_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    put_numbers(outbox, range(1, 8))
    for _ in range(3):
        outbox.ack(outbox.first())  # type: ignore[arg-type]

    reopened = Outbox(tmp_path / "outbox")
    assert pending_numbers(reopened) == [4, 5, 6, 7]
    put_numbers(reopened, range(8, 10))  # new messages queue behind the replayed ones
    assert pending_numbers(reopened) == [4, 5, 6, 7, 8, 9]
    assert [message.order for message in reopened] == [4, 5, 6, 7, 8, 9]


def test_a_pending_key_is_not_queued_twice_even_across_restarts(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    first = outbox.put("devices/d/commands/c-1/result", '{"status":"done"}', key="result:c-1")
    assert first is not None
    assert (
        outbox.put("devices/d/commands/c-1/result", '{"status":"done"}', key="result:c-1") is None
    )
    assert len(outbox) == 1

    reopened = Outbox(tmp_path / "outbox")
    assert reopened.put("devices/d/commands/c-1/result", "{}", key="result:c-1") is None
    assert len(list((tmp_path / "outbox").glob("*.json"))) == 1

    reopened.ack(reopened.first())  # type: ignore[arg-type]
    again = reopened.put("devices/d/commands/c-1/result", "{}", key="result:c-1")
    assert again is not None  # no longer pending: the platform de-duplicates from here on
    assert again.order == 2


def test_acknowledging_out_of_order_removes_just_that_message(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    put_numbers(outbox, range(1, 4))
    middle = list(outbox)[1]
    outbox.ack(middle)
    assert pending_numbers(outbox) == [1, 3]
    assert pending_numbers(Outbox(tmp_path / "outbox")) == [1, 3]


def test_a_full_outbox_refuses_new_messages_and_keeps_the_queued_ones(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox", limit=3)
    put_numbers(outbox, range(1, 4))
    with pytest.raises(OutboxFull):
        outbox.put("devices/d/telemetry", '{"seq":4}')
    assert pending_numbers(outbox) == [1, 2, 3]
    assert len(list((tmp_path / "outbox").iterdir())) == 3


def test_leftovers_of_an_interrupted_write_are_ignored_and_cleaned(tmp_path: Path) -> None:
    directory = tmp_path / "outbox"
    outbox = Outbox(directory)
    put_numbers(outbox, range(1, 3))
    half_written = directory / ".000000000003.json.1a2b3c.tmp"
    half_written.write_text('{"topic": "devices/d/tele')

    reopened = Outbox(directory)
    assert pending_numbers(reopened) == [1, 2]
    assert not half_written.exists()


def test_an_unreadable_file_is_moved_aside_not_deleted(tmp_path: Path) -> None:
    directory = tmp_path / "outbox"
    put_numbers(Outbox(directory), range(1, 4))
    (directory / "000000000002.json").write_text("\x00\x00 flash damage")

    reopened = Outbox(directory)
    assert pending_numbers(reopened) == [1, 3]
    assert (directory / "000000000002.json.corrupt").read_text() == "\x00\x00 flash damage"


WRITER = """
import json, sys
from pathlib import Path
from agent.outbox import Outbox
outbox = Outbox(Path(sys.argv[1]), fsync=True)
number = 0
print("ready", flush=True)
while True:
    number += 1
    body = json.dumps({"seq": number, "pad": "x" * 300})
    outbox.put("devices/d/telemetry", body, key=str(number))
    if number % 7 == 0:
        outbox.ack(outbox.first())
"""


def test_a_crash_in_the_middle_of_writing_leaves_a_consistent_ordered_outbox(
    tmp_path: Path,
) -> None:
    """SIGKILL a writer at arbitrary moments: every file left is whole, in order, contiguous
    after the acknowledged prefix, and the next start goes on behind it."""
    directory = tmp_path / "outbox"
    for round_number in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(directory)],
            cwd=REPOSITORY,
            stdout=subprocess.PIPE,
        )
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"ready\n"
        time.sleep(0.3 + 0.1 * round_number)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()

        reopened = Outbox(directory)
        numbers = pending_numbers(reopened)
        orders = [message.order for message in reopened]
        assert len(numbers) > 10
        assert orders == list(range(orders[0], orders[0] + len(orders)))  # no hole
        assert not list(directory.glob("*.corrupt"))
        assert not list(directory.glob(".*.tmp"))
        if round_number == 0:
            assert numbers == sorted(numbers)
            assert numbers[-1] - numbers[0] == len(numbers) - 1
