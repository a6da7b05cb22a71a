"""``manage.py broker_sync``: keep the broker's CRL and device password file in step with the
registry, and make the broker reload them (SIGHUP to the PID in ``--pidfile``).

Run once after a change, or as a sidecar next to the broker (``--watch 10`` in the Procfile): a
revoked certificate or token is then refused on the device's next connect within seconds. The
files are rewritten only when ``BrokerState`` moved, the CRLs are past half their validity or a
token expired, so a quiet installation costs one small query per interval."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, close_old_connections

from apps.devices import broker

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Rewrite the broker's CRL and device password file when they changed; reload it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--directory", default=settings.MQTT_BROKER_DIR)
        parser.add_argument(
            "--watch", type=float, default=0, metavar="SECONDS", help="repeat every SECONDS"
        )
        parser.add_argument(
            "--pidfile",
            default=settings.MQTT_BROKER_PIDFILE,
            help="the broker's PID file; without it the files are written but nobody is told",
        )
        parser.add_argument("--force", action="store_true", help="rewrite even if unchanged")

    def handle(self, *args: Any, **options: Any) -> None:
        directory, pidfile, every = Path(options["directory"]), options["pidfile"], options["watch"]
        if every <= 0:
            if not self.once(directory, pidfile, force=options["force"]):
                self.stdout.write(f"broker files in {directory} are up to date")
            return
        force = options["force"]
        while True:
            try:
                self.once(directory, pidfile, force=force)
                force = False
            except (DatabaseError, OSError):
                # The database or the broker may be restarting: keep watching, and say so.
                logger.exception("broker_sync failed; retrying in %s s", every)
            time.sleep(every)
            close_old_connections()  # a long-running loop must not keep a dead connection

    def once(self, directory: Path, pidfile: str, *, force: bool) -> bool:
        if not broker.sync(directory, force=force):
            return False
        if pidfile and Path(pidfile).exists():
            broker.reload(pidfile)
            self.stdout.write(f"broker files rewritten in {directory}; broker reloaded")
        else:
            self.stdout.write(f"broker files rewritten in {directory}; no PID file to signal")
        self.stdout.flush()  # a sidecar's output goes to a pipe (honcho, systemd)
        return True
