"""Benchmark: end-to-end telemetry ingest against a bare paho-mqtt subscriber (issue 5).

In a dedicated database (``fleetops_bench_ingest``), Redis database 11 and a Mosquitto of its
own running the platform's generated configuration (persistence on), measures in one run:

1. the baseline: a bare paho-mqtt subscriber (manual acknowledgements, no processing) draining
   a backlog of N QoS 1 telemetry messages that was published into its persistent session on a
   shared subscription while it was offline; once over MQTT 3.1.1 and once over MQTT 5, one
   process, and MQTT 3.1.1 with two processes;
2. ``manage.py ingest`` draining the same backlog (same size, same devices, same payloads but a
   new ``boot`` so nothing is a duplicate) from its own persistent session, publish -> validated,
   normalized against the profile's schema, COPY'd, latest values merged, alert rules evaluated,
   committed -> acknowledged; with one worker process and with two over ``--protocol`` (the
   worker's default, MQTT 3.1.1), and with one over the other MQTT version (paho-mqtt parses MQTT 5
   properties on every message: it costs the bare subscriber too, see 1).

Each backlog is published by several processes before anything is timed. A drain's time runs
from the consumers' CONNACK to the last acknowledgement (bare) or the last committed and
acknowledged batch (ingest, from the workers' own stats). The ratio is ingest msgs/s over the
fastest bare single-process msgs/s; goal >= 0.65.

3. kill -9: two workers ingest a stream published while one of them is killed with SIGKILL
   every 0.5-2 s (at least ``--kills`` times) and restarted under its name; the table must then
   hold every (device, boot, seq) sent exactly once.

Usage: python bench/ingest.py [--scale quick|full] [--messages N] [--devices N] [--kills N]
       [--protocol 3.1.1|5] [--batch-size N] [--only bare|ingest|kill ...]
       (quick: 100,000 messages from 1,000 devices; full: 500,000 from 10,000)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.prod")

from bench import ingest_mqtt as mq  # noqa: E402

CLIENT_ID_PREFIX = "fleetops-ingest-"  # apps.telemetry.ingest_worker.CLIENT_ID_PREFIX

SCALES: dict[str, dict[str, int]] = {
    "quick": {"messages": 100_000, "devices": 1_000, "kill_messages": 40_000},
    "full": {"messages": 500_000, "devices": 10_000, "kill_messages": 500_000},
}
DATABASE = "fleetops_bench_ingest"
REDIS_DB = 11  # 12: bench/live_latency.py, 13: bench/connectivity.py
GOAL = 0.65
PUBLISHERS = 4
OUT = ROOT / "var" / "bench"
WORK = OUT / "ingest"
CHECKS: list[tuple[str, bool]] = []


def check(name: str, passed: bool) -> bool:
    CHECKS.append((name, passed))
    print(f"  check: {name}: {'ok' if passed else 'FAILED'}", flush=True)
    return passed


def setup(devices: int) -> list[str]:
    """The bench database with one manufacturer, a profile with a telemetry schema, an alert
    rule evaluated on every sample and ``devices`` active devices; returns their ids."""
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
    from bench.ingest_world import build_world

    return build_world(devices)


def backlog(broker: mq.Broker, devices: list[str], per_device: int, boot: int) -> float:
    messages = mq.payloads(devices, per_device, boot, now_iso())
    seconds = mq.publish(broker, messages, processes=PUBLISHERS)
    print(
        f"    backlog: {len(messages):,} messages published in {seconds:.1f} s "
        f"({len(messages) / seconds:,.0f}/s, {PUBLISHERS} processes)",
        flush=True,
    )
    return seconds


def now_iso() -> str:
    return datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def run_bare(
    broker: mq.Broker, devices: list[str], per_device: int, boot: int, *, v5: bool, processes: int
) -> dict[str, Any]:
    names = [f"bench-bare-{'v5' if v5 else 'v3'}-{k}" for k in range(processes)]
    label = f"bare paho, MQTT {'5' if v5 else '3.1.1'}, {processes} process(es)"
    print(f"  {label}", flush=True)
    mq.bare_prepare(broker, names, v5=v5)
    backlog(broker, devices, per_device, boot)
    found = mq.bare_drain(broker, names, len(devices) * per_device, v5=v5)
    mq.bare_end(broker, names, v5=v5)
    check(f"{label}: drained every message", found["messages"] == len(devices) * per_device)
    print(f"    drained {found['messages']:,} in {found['seconds']:.2f} s: {found['rate']:,.0f}/s")
    return found | {"label": label}


def run_ingest(
    broker: mq.Broker,
    devices: list[str],
    per_device: int,
    boot: int,
    *,
    processes: int,
    options: list[str],
) -> dict[str, Any]:
    from bench.ingest_world import stored_counts, worker_documents

    protocol = options[options.index("--protocol") + 1]
    label = f"ingest, MQTT {protocol}, {processes} worker process(es)"
    print(f"  {label}", flush=True)
    names = [f"bench-{k}" for k in range(processes)]
    for name in names:  # their sessions (and subscriptions) exist before the backlog
        mq.start_worker(broker, name, WORK, *options).stop()
    backlog(broker, devices, per_device, boot)
    total = len(devices) * per_device
    workers = [mq.start_worker(broker, name, WORK, *options, wait=False) for name in names]
    deadline = time.monotonic() + 900
    while sum(doc["messages"] for doc in worker_documents(names)) < total:
        if time.monotonic() > deadline or any(w.process.poll() is not None for w in workers):
            break
        time.sleep(0.2)
    documents = worker_documents(names)
    for worker in workers:
        worker.stop()
    # A session left behind would keep getting its share of later runs' messages.
    mq.bare_end(broker, [CLIENT_ID_PREFIX + name for name in names], v5=True)
    start = min(_stamp(doc["connected_at"]) for doc in documents)
    end = max(_stamp(doc["last_batch_at"]) for doc in documents)
    stored, distinct, dead = stored_counts(boot)
    check(f"{label}: every message stored once", stored == distinct == total and dead == 0)
    seconds = end - start
    found = {
        "label": label,
        "messages": sum(doc["messages"] for doc in documents),
        "seconds": seconds,
        "rate": total / seconds,
        "batch_size_avg": [doc["batch_size_avg"] for doc in documents],
        "latency_ms_avg": [doc["latency_ms_avg"] for doc in documents],
    }
    print(
        f"    stored {stored:,} rows in {seconds:.2f} s: {found['rate']:,.0f}/s "
        f"(batches of {found['batch_size_avg']} on average, "
        f"{found['latency_ms_avg']} ms per commit)",
        flush=True,
    )
    return found


def _stamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def run_kills(
    broker: mq.Broker, devices: list[str], total: int, boot: int, *, kills: int, options: list[str]
) -> dict[str, Any]:
    """Two workers, one of them SIGKILLed every 0.5-2 s while the stream is published."""
    from bench.ingest_world import per_device_check

    per_device = max(1, total // len(devices))
    print(f"  kill -9: {len(devices) * per_device:,} messages, >= {kills} kills", flush=True)
    steady = mq.start_worker(broker, "bench-steady", WORK, *options)
    victim = mq.start_worker(broker, "bench-victim", WORK, *options)
    messages = mq.payloads(devices, per_device, boot, now_iso())
    import threading

    sending = threading.Thread(
        target=mq.publish, args=(broker, messages), kwargs={"processes": 2, "rate": 8000.0}
    )
    sending.start()
    done, chance = 0, random.Random(9)
    while done < kills or sending.is_alive():
        time.sleep(chance.uniform(0.5, 2.0))
        victim.kill()
        done += 1
        victim = mq.start_worker(broker, "bench-victim", WORK, *options)
    sending.join()
    ok, detail = per_device_check(boot, len(devices), per_device, timeout=600)
    steady.stop()
    victim.stop()
    mq.bare_end(
        broker, [CLIENT_ID_PREFIX + "bench-steady", CLIENT_ID_PREFIX + "bench-victim"], v5=True
    )
    check(f"kill -9 x{done}: zero lost, zero duplicates ({detail})", ok)
    return {"kills": done, "messages": len(messages), "ok": ok, "detail": detail}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="quick")
    parser.add_argument("--messages", type=int)
    parser.add_argument("--devices", type=int)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--protocol", choices=["3.1.1", "5"], default="3.1.1")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--only", action="append", choices=["bare", "ingest", "kill"])
    arguments = parser.parse_args()
    scale = SCALES[arguments.scale]
    count = arguments.devices or scale["devices"]
    per_device = max(1, (arguments.messages or scale["messages"]) // count)
    parts = set(arguments.only or ["bare", "ingest", "kill"])
    options = ["--batch-size", str(arguments.batch_size)]
    print(f"scale={arguments.scale}: {count * per_device:,} messages from {count:,} devices")
    devices = setup(count)
    from bench.ingest_world import broker as running_broker

    record: dict[str, Any] = {"scale": arguments.scale, "protocol": arguments.protocol}
    with running_broker(WORK / "broker") as broker:
        boot = iter(range(1, 100))
        if "bare" in parts:
            record["bare"] = [
                run_bare(broker, devices, per_device, next(boot), v5=v5, processes=processes)
                for v5, processes in ((False, 1), (True, 1), (False, 2))
            ]
        if "ingest" in parts:
            other = "5" if arguments.protocol == "3.1.1" else "3.1.1"
            record["ingest"] = [
                run_ingest(
                    broker,
                    devices,
                    per_device,
                    next(boot),
                    processes=processes,
                    options=[*options, "--protocol", protocol],
                )
                for protocol, processes in (
                    (arguments.protocol, 1),
                    (arguments.protocol, 2),
                    (other, 1),
                )
            ]
        if "kill" in parts:
            record["kill"] = run_kills(
                broker,
                devices,
                arguments.messages or scale["kill_messages"],
                next(boot),
                kills=arguments.kills,
                options=[*options, "--protocol", arguments.protocol],
            )
    report(record)
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"ingest-{arguments.scale}.json"
    out.write_text(json.dumps(record | {"checks": CHECKS, "load": os.getloadavg()}, indent=2))
    failed = [name for name, passed in CHECKS if not passed]
    print(
        f"{len(CHECKS) - len(failed)}/{len(CHECKS)} checks passed"
        + (f"; failed: {failed}" if failed else "")
        + f" (figures in {out.relative_to(ROOT)})"
    )
    return 1 if failed else 0


def report(record: dict[str, Any]) -> None:
    if not record.get("bare") or not record.get("ingest"):
        return
    single = [run for run in record["bare"] if run["label"].endswith("1 process(es)")]
    best = max(single, key=lambda run: run["rate"])
    print(f"baseline: {best['label']}: {best['rate']:,.0f} msgs/s")
    for run in record["ingest"]:
        ratio = run["rate"] / best["rate"]
        run["ratio"] = ratio
        print(f"  {run['label']}: {run['rate']:,.0f} msgs/s, ratio {ratio:.2f} (goal >= {GOAL})")
    check(
        f"ingest / bare paho >= {GOAL}",
        max(run["ratio"] for run in record["ingest"]) >= GOAL,
    )


if __name__ == "__main__":
    sys.exit(main())
