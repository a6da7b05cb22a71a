"""Fleetops reference device agent: a small, readable device you can copy into firmware.

Pure Python (no Django), three dependencies (``requirements.txt``). The modules, in reading order:

- ``files``    atomic, fsync'ed file writes (everything on disk goes through it)
- ``backoff``  exponential backoff with full jitter, ``Retry-After``
- ``state``    the state directory: credentials, identity, boot counter
- ``device_api`` the HTTPS device API client (stdlib ``urllib``, explicit timeouts)
- ``enroll``   key on the device, CSR, ``POST /device/v1/enroll``, quarantine polling, renewal
- ``outbox``   the on-disk outbox: one file per message until the broker's PUBACK
- ``device``   the MQTT session: status/last will, heartbeats, telemetry, reconnects
- ``aio``      asyncio helpers: connection pacing for fleets, racing tasks, stoppable sleeps
- ``metrics``  synthetic metrics and host vitals
- ``simulate`` N virtual devices in one asyncio process
- ``cli``      ``python -m agent enroll | run | simulate | status``

The wire contract is ``docs/device-protocol.md``."""

from __future__ import annotations

__version__ = "1.0.0"
