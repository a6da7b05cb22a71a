"""Desired configuration on the device: check it, apply it, say what happened.

The platform sends ``{"version", "checksum", "configuration"}`` as the retained
``devices/<id>/config/desired`` message (delivered again at every subscription) or as the
answer of ``GET /device/v1/configuration`` (HTTPS-only devices pull by checksum). The device:

1. checks the document (an object with an integer ``version``, the SHA-256 ``checksum`` of the
   canonical JSON of ``configuration``); a bad one is reported as ``error`` and not applied;
2. applies it through ``apply`` (the maker's function; the reference agent's default only
   stores it in ``applied.json``): an exception is reported as ``error``, and the previous
   configuration stays in force;
3. reports ``{"version", "checksum", "status": "applied"|"error", "error"}`` on
   ``config/reported`` (through the outbox) or ``POST /device/v1/config/reported``.

The same document received again (a retained message after a reconnect) is not applied or
reported twice.

A maker plugs in its own apply step::

    def apply(configuration: dict) -> None:
        if not 0 <= configuration.get("brightness", 50) <= 100:
            raise ValueError("brightness out of range")
        display.set_brightness(configuration.get("brightness", 50))

    Applier(state_dir, report, apply=apply)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .device_api import Reply, Transport, get_json, post_json
from .files import write_atomic

log = logging.getLogger("agent.configuration")

Report = Callable[[dict[str, Any]], None]
Apply = Callable[[dict[str, Any]], None]


class InvalidDocument(ValueError):
    """The desired document is malformed; its version when it could be read."""

    def __init__(self, message: str, version: int = 0, checksum: str = "") -> None:
        super().__init__(message)
        self.version = version
        self.checksum = checksum


def canonical_checksum(document: Any) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8): the platform's checksum."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def parse(payload: bytes) -> tuple[int, str, dict[str, Any]]:
    """``(version, checksum, configuration)``; InvalidDocument if malformed."""
    try:
        document = json.loads(payload)
    except ValueError:
        raise InvalidDocument("not JSON") from None
    if not isinstance(document, dict):
        raise InvalidDocument("not a JSON object")
    version, checksum = document.get("version"), document.get("checksum")
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise InvalidDocument("version: not a non-negative integer")
    if not isinstance(checksum, str) or len(checksum) != 64:
        raise InvalidDocument("checksum: not a SHA-256", version)
    configuration = document.get("configuration")
    if not isinstance(configuration, dict):
        raise InvalidDocument("configuration: not an object", version, checksum)
    if canonical_checksum(configuration) != checksum:
        raise InvalidDocument("checksum: does not match the configuration", version, checksum)
    return version, checksum, configuration


def store_only(configuration: dict[str, Any]) -> None:
    """The reference agent's apply step: nothing to drive (``applied.json`` keeps it)."""


class Applier:
    """Applies desired configuration documents and reports each outcome once."""

    def __init__(
        self, directory: Path, report: Report, *, apply: Apply = store_only, fsync: bool = True
    ) -> None:
        self.directory = directory
        self.report = report
        self.apply = apply
        self.fsync = fsync

    @property
    def applied_file(self) -> Path:
        return self.directory / "applied.json"

    @property
    def reported_file(self) -> Path:
        return self.directory / "reported.json"

    def applied(self) -> dict[str, Any]:
        """The configuration in force: ``{"version", "checksum", "configuration"}`` or {}."""
        return _read(self.applied_file)

    def accept(self, payload: bytes) -> dict[str, Any] | None:
        """Apply ``payload`` and report; returns the report, None when it was already made."""
        try:
            version, checksum, configuration = parse(payload)
            if self.applied().get("checksum") != checksum:
                self.apply(configuration)
                document = {
                    "version": version,
                    "checksum": checksum,
                    "configuration": configuration,
                }
                self._write(self.applied_file, document)
            body: dict[str, Any] = {"version": version, "checksum": checksum, "status": "applied"}
        except InvalidDocument as error:
            body = {
                "version": error.version,
                "checksum": error.checksum or "0" * 64,
                "status": "error",
                "error": str(error),
            }
        except Exception as error:  # the maker's apply step refused it
            body = {
                "version": version,
                "checksum": checksum,
                "status": "error",
                "error": str(error),
            }
        if _read(self.reported_file) == body:
            return None
        log.info("configuration v%s: %s %s", body["version"], body["status"], body.get("error", ""))
        self.report(body)
        self._write(self.reported_file, body)
        return body

    def _write(self, path: Path, document: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(document).encode(), mode=0o600, fsync=self.fsync)


def _read(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def pull(
    applier: Applier,
    base_url: str,
    *,
    headers: dict[str, str],
    transport: Transport | None = None,
) -> dict[str, Any] | None:
    """One HTTPS round (blocking): download the desired configuration only if its checksum
    changed, apply it, and post the report. Returns the report made, None when unchanged."""
    # a report that never got through: download again so it is made again
    unreported = not _read(applier.reported_file)
    checksum = "" if unreported else applier.applied().get("checksum", "")
    wanted = {**headers, "If-None-Match": f'"{checksum}"'} if checksum else dict(headers)
    reply: Reply = get_json(
        f"{base_url}/device/v1/configuration", transport=transport, headers=wanted
    )
    if reply.status == 304:
        return None
    if reply.status != 200:
        raise RuntimeError(f"configuration pull: {reply.describe_error()}")
    sent: list[dict[str, Any]] = []
    original = applier.report
    applier.report = sent.append
    try:
        made = applier.accept(json.dumps(reply.body).encode())
    finally:
        applier.report = original
    for body in sent:
        answer = post_json(
            f"{base_url}/device/v1/config/reported", body, transport=transport, headers=headers
        )
        if answer.status != 202:
            applier.reported_file.unlink(missing_ok=True)
            raise RuntimeError(f"configuration report: {answer.describe_error()}")
    return made
