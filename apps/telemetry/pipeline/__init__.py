"""The telemetry ingest pipeline (docs/telemetry.md).

``process_batch`` stores a batch of raw uplink messages (MQTT via the ingest worker, HTTPS via
``drain_uplinks``) in one transaction; the dead-letter services replay or discard what it
refused.
"""

from __future__ import annotations

from .batch import process_batch
from .caches import caches
from .dead_letters import ReplayResult, dead_letter_discard, dead_letter_replay
from .uplinks import drain_uplinks

__all__ = [
    "ReplayResult",
    "caches",
    "dead_letter_discard",
    "dead_letter_replay",
    "drain_uplinks",
    "process_batch",
]
