"""``manage.py broker_config``: write the MQTT broker's files (Mosquitto) from the platform's PKI
and registry into ``MQTT_BROKER_DIR`` (docs/operations.md, "Broker").

Ports come from ``MQTT_DEVICE_PORT``/``MQTT_TOKEN_PORT``; the platform listener's address, port
and account from ``MQTT_URL`` (``mqtt://<user>:<password>@<host>:<port>``; ``mqtts://`` puts the
server certificate on that listener too). Run it after ``migrate``; start (or restart) the
broker with ``mosquitto -c <directory>/mosquitto.conf``."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.devices import broker


class Command(BaseCommand):
    help = "Write the MQTT broker's configuration, certificates, CRL, password files and ACLs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--directory", default=settings.MQTT_BROKER_DIR)
        parser.add_argument("--data-dir", help="persistence directory (default: <directory>/data)")
        parser.add_argument("--log-file", help="broker log (default: <directory>/mosquitto.log)")
        parser.add_argument(
            "--pidfile",
            default=settings.MQTT_BROKER_PIDFILE,
            help="default <directory>/mosquitto.pid",
        )
        parser.add_argument(
            "--device-host", default="", help="bind address of the device listeners (default: all)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        directory = Path(options["directory"])
        url = urlsplit(settings.MQTT_URL)
        if url.scheme not in ("mqtt", "mqtts") or not (url.username and url.password):
            raise CommandError(
                "MQTT_URL must name the platform account: mqtt://<user>:<password>@<host>:<port>"
            )
        config = broker.write_config(
            directory,
            device_port=settings.MQTT_DEVICE_PORT,
            token_port=settings.MQTT_TOKEN_PORT,
            platform_port=url.port or (8883 if url.scheme == "mqtts" else 1883),
            platform_host=url.hostname or "127.0.0.1",
            platform_username=unquote(url.username),
            platform_password=unquote(url.password),
            platform_tls=url.scheme == "mqtts",
            data_dir=options["data_dir"] or directory / "data",
            log_file=options["log_file"] or directory / "mosquitto.log",
            pid_file=options["pidfile"] or directory / "mosquitto.pid",
            device_host=options["device_host"],
        )
        self.stdout.write(f"broker configuration written: {config}")
