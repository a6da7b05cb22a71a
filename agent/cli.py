"""Command line: ``python -m agent enroll | run | simulate | status`` (``--help`` on each).

Exit codes: 0 done; 2 bad usage; 3 the platform refused the enrollment; 4 the platform could not
be reached in time; 5 not enrolled yet (``run`` before ``enroll``).

Secrets are better passed through the environment than on the command line, where every user
of the machine can read them: ``FLEETOPS_CLAIM_TOKEN``, and ``FLEETOPS_URL`` for convenience."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from . import keys
from .device import Agent, Options
from .device_api import Transport
from .enroll import Enrollment, EnrollmentError, Proof, enroll
from .outbox import FILE_NAME
from .simulate import FleetOptions, simulate
from .state import NotEnrolled, StateDir

EXIT_USAGE = 2
EXIT_NOT_ENROLLED = 5


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except EnrollmentError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except NotEnrolled as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NOT_ENROLLED
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    commands = parser.add_subparsers(required=True, metavar="command")
    _enroll_parser(commands.add_parser("enroll", help="enroll this device (zero-touch)"))
    _run_parser(commands.add_parser("run", help="connect and stream until stopped"))
    _simulate_parser(commands.add_parser("simulate", help="run N virtual devices"))
    _https_commands_parser(
        commands.add_parser("https-commands", help="run commands polled over HTTPS (no MQTT)")
    )
    status = commands.add_parser("status", help="print the stored identity and outbox depth")
    status.add_argument("--state-dir", required=True, type=Path)
    status.set_defaults(handler=command_status)
    return parser


def _enroll_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=os.environ.get("FLEETOPS_URL"), required=not os.environ.get("FLEETOPS_URL")
    )
    parser.add_argument("--serial", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--claim-token", default=os.environ.get("FLEETOPS_CLAIM_TOKEN"))
    parser.add_argument("--factory-certificate", type=Path, help="PEM chain, leaf first")
    parser.add_argument("--factory-key", type=Path, help="PEM private key of that certificate")
    parser.add_argument("--credential", choices=["certificate", "token"], default="certificate")
    parser.add_argument("--profile")
    parser.add_argument("--hardware-revision")
    parser.add_argument("--platform-ca", help="CA file for the platform's HTTPS certificate")
    parser.add_argument("--timeout", type=float, default=15.0, help="per request, seconds")
    parser.add_argument("--max-wait", type=float, help="give up after this many seconds")
    parser.add_argument("--force", action="store_true", help="enroll again (a wiped device)")
    parser.set_defaults(handler=command_enroll)


def _run_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--telemetry-interval", type=float, default=30.0, help="0: none")
    parser.add_argument("--samples", type=int, help="stop sampling after this many")
    parser.add_argument("--heartbeat-interval", type=float, help="default: the policy's")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--platform-ca", help="CA file for the platform's HTTPS certificate")
    parser.add_argument("--no-fsync", action="store_true", help="faster, not power-cut safe")
    parser.add_argument("--backoff-cap", type=float, default=120.0)
    parser.set_defaults(handler=command_run)


def _https_commands_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between polls")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--platform-ca", help="CA file for the platform's HTTPS certificate")
    parser.set_defaults(handler=command_https_commands)


def command_https_commands(args: argparse.Namespace) -> int:
    from .commands import run_https

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        await run_https(
            StateDir(args.state_dir), stop, interval=args.interval, ca_file=args.platform_ca
        )

    asyncio.run(run())
    return 0


def _simulate_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument(
        "--url", default=os.environ.get("FLEETOPS_URL"), required=not os.environ.get("FLEETOPS_URL")
    )
    parser.add_argument("--claim-token", default=os.environ.get("FLEETOPS_CLAIM_TOKEN"))
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--telemetry-interval", type=float, default=30.0)
    parser.add_argument("--heartbeat-interval", type=float)
    parser.add_argument("--serial-prefix", default="SIM-")
    parser.add_argument("--connect-rate", type=float, default=500.0, help="attempts per second")
    parser.add_argument("--connect-concurrency", type=int, default=32)
    parser.add_argument("--enroll-concurrency", type=int, default=8)
    parser.add_argument("--summary-interval", type=float, default=5.0)
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--platform-ca")
    parser.add_argument("--fsync", action="store_true", help="fsync every outbox write")
    parser.add_argument(
        "--outage-every", type=float, default=0.0, help="seconds between power cuts (0: none)"
    )
    parser.add_argument("--outage-seconds", type=float, default=90.0, help="length of a cut")
    parser.set_defaults(handler=command_simulate)


def command_enroll(args: argparse.Namespace) -> int:
    state = StateDir(args.state_dir)
    if state.is_enrolled() and not args.force:
        print(json.dumps(_describe(state), indent=2))
        return 0
    request = Enrollment(
        url=args.url,
        serial=args.serial,
        proof=_proof(args),
        credential=args.credential,
        profile=args.profile,
        hardware_revision=args.hardware_revision,
        transport=Transport(ca_file=args.platform_ca, timeout=args.timeout),
        max_wait=args.max_wait,
    )
    asyncio.run(enroll(state, request))
    print(json.dumps(_describe(state), indent=2))
    return 0


def _proof(args: argparse.Namespace) -> Proof:
    if args.factory_certificate or args.factory_key:
        if not (args.factory_certificate and args.factory_key):
            raise ValueError("--factory-certificate and --factory-key go together.")
        return Proof(
            factory_certificate=args.factory_certificate.read_text(),
            factory_key=keys.load_key(args.factory_key.read_bytes()),
        )
    if not args.claim_token:
        raise ValueError("Give --claim-token (or FLEETOPS_CLAIM_TOKEN) or a factory certificate.")
    return Proof(claim_token=args.claim_token)


def command_run(args: argparse.Namespace) -> int:
    options = Options(
        telemetry_interval=args.telemetry_interval,
        samples=args.samples,
        heartbeat_interval=args.heartbeat_interval,
        fsync=not args.no_fsync,
        platform_ca_file=args.platform_ca,
        backoff_cap=args.backoff_cap,
    )
    asyncio.run(_run(StateDir(args.state_dir), options, args.duration))
    return 0


async def _run(state: StateDir, options: Options, duration: float | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    await Agent(state, options).run(stop)


def command_simulate(args: argparse.Namespace) -> int:
    if not args.claim_token:
        raise ValueError("Give --claim-token (or FLEETOPS_CLAIM_TOKEN).")
    options = FleetOptions(
        count=args.count,
        url=args.url,
        claim_token=args.claim_token,
        state_dir=args.state_dir,
        serial_prefix=args.serial_prefix,
        telemetry_interval=args.telemetry_interval,
        heartbeat_interval=args.heartbeat_interval,
        connect_rate=args.connect_rate,
        connect_concurrency=args.connect_concurrency,
        enroll_concurrency=args.enroll_concurrency,
        summary_interval=args.summary_interval,
        duration=args.duration,
        fsync=args.fsync,
        platform_ca_file=args.platform_ca,
        outage_every=args.outage_every,
        outage_seconds=args.outage_seconds,
    )
    # Ten thousand devices reconnecting would print ten thousand warnings: the summary line
    # says it all unless asked for more.
    if args.log_level == "info":
        logging.getLogger("agent").setLevel(logging.ERROR)
        # aiomqtt reports answers that arrive for operations cancelled at shutdown
        logging.getLogger("mqtt").setLevel(logging.CRITICAL)
    asyncio.run(simulate(options))
    return 0


def command_status(args: argparse.Namespace) -> int:
    print(json.dumps(_describe(StateDir(args.state_dir)), indent=2))
    return 0


def _describe(state: StateDir) -> dict[str, object]:
    identity = state.identity()
    boot_file = state.path / "boot"
    return {
        "device_id": identity.device_id,
        "serial": identity.serial,
        "state": identity.state,
        "credential": identity.credential,
        "broker": f"{identity.broker.host}:{identity.broker.port}",
        "renew_after": identity.renew_after,
        "boot": int(boot_file.read_text()) if boot_file.exists() else 0,
        # counted, not opened: opening an outbox cleans up temporaries a running agent may own
        "outbox": sum(1 for path in state.outbox_dir.glob("*.json") if FILE_NAME.match(path.name)),
    }
