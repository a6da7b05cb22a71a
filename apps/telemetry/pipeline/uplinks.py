"""HTTPS uploads (``UplinkMessage`` rows queued by the device API) through the same pipeline."""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone

from ..choices import Source
from ..types import Incoming
from .batch import process_batch

__all__ = ["drain_uplinks"]

# Oldest first; SKIP LOCKED so that several drainers (workers, the periodic task) never wait
# for one another or take the same rows.
CLAIM_SQL = """
SELECT id, device_id, kind, payload::text, received_at FROM devices_uplinkmessage
WHERE processed_at IS NULL ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
"""
DONE_SQL = "UPDATE devices_uplinkmessage SET processed_at = %(now)s WHERE id = ANY(%(ids)s)"


def drain_uplinks(*, limit: int = 1000) -> int:
    """Claim up to ``limit`` pending uploads, run them through ``process_batch`` and mark them
    processed, all in one transaction; returns how many were claimed."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(CLAIM_SQL, {"limit": limit})
            rows = cursor.fetchall()
        if not rows:
            return 0
        process_batch(
            [
                Incoming(
                    topic=f"devices/{device_id}/{kind}",
                    payload=payload.encode(),
                    received_at=received_at,
                    source=Source.HTTPS,
                    ref=uplink_id,
                )
                for uplink_id, device_id, kind, payload, received_at in rows
            ]
        )
        with connection.cursor() as cursor:
            cursor.execute(DONE_SQL, {"now": timezone.now(), "ids": [row[0] for row in rows]})
    return len(rows)
