"""``manage.py ingest``: run one ingest worker (see ``apps.telemetry.ingest_worker``).

Each worker needs a name of its own that it keeps across restarts: its MQTT session, with the
messages the broker kept for it while it was down, belongs to the client id
``fleetops-ingest-<name>``. The default name is ``<host name>-<index>`` (``--index``, default 0):
run more workers on one host with ``--index 1``, ``--index 2``...
"""

from __future__ import annotations

import signal
import socket
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.telemetry.ingest_worker import IngestWorker, WorkerConfig


class Command(BaseCommand):
    help = "Ingest devices' telemetry, heartbeats and events from MQTT (runs until SIGTERM)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", default="", help="worker name (default: <host>-<index>)")
        parser.add_argument("--index", type=int, default=0, help="worker number on this host")
        parser.add_argument("--batch-size", type=int, default=5000)
        parser.add_argument(
            "--max-wait-ms", type=int, default=200, help="longest wait to fill a batch"
        )
        parser.add_argument(
            "--session-expiry",
            type=int,
            default=30 * 24 * 3600,
            help="MQTT 5: seconds the broker keeps this worker's session (and queue) while it is "
            "away (3.1.1: the broker's persistent_client_expiration decides)",
        )
        parser.add_argument(
            "--protocol",
            choices=["3.1.1", "5"],
            default="3.1.1",
            help="MQTT version: 3.1.1 costs paho-mqtt half as much per message (bench/ingest.py); "
            "5 asks the broker for two batches in flight itself",
        )
        parser.add_argument(
            "--retire",
            action="store_true",
            help="take this worker out for good: leave the shared subscription, store what its "
            "session still holds, then stop",
        )
        parser.add_argument(
            "--no-uplinks",
            action="store_true",
            help="leave the HTTPS uploads to other workers",
        )
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=0,
            help="serve this worker's Prometheus metrics on this port (127.0.0.1)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.MQTT_URL:
            raise CommandError("MQTT_URL is not set.")
        name = options["name"] or f"{socket.gethostname()}-{options['index']}"
        worker = IngestWorker(
            WorkerConfig(
                url=settings.MQTT_URL,
                name=name,
                batch_size=max(1, options["batch_size"]),
                max_wait=max(0, options["max_wait_ms"]) / 1000,
                session_expiry=max(0, options["session_expiry"]),
                uplinks=not options["no_uplinks"] and not options["retire"],
                retire=options["retire"],
                protocol=options["protocol"],
            )
        )
        if options["metrics_port"]:
            from apps.telemetry.metrics import serve_worker_metrics

            serve_worker_metrics(worker.stats, port=options["metrics_port"])
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, worker.stop)
        worker.run()
