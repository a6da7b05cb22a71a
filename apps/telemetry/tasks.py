"""Thin Celery entry points of the telemetry app."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import partitions, wellness


@shared_task(
    name="telemetry.maintain_partitions",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=30,
    retry_backoff_max=600,
    max_retries=3,
    soft_time_limit=900,
    time_limit=960,
    acks_late=True,
    ignore_result=True,
)
def maintain_partitions() -> dict[str, Any]:
    """Partitions ahead, retention behind (idempotent; hourly on the beat schedule)."""
    done = partitions.maintain()
    return {
        "created": done.created,
        "dropped": done.dropped,
        "deleted_rows": done.deleted_rows,
        "deleted_uplinks": done.deleted_uplinks,
    }


@shared_task(
    name="telemetry.heartbeat_sweep",
    soft_time_limit=15,
    time_limit=20,
    acks_late=True,
    ignore_result=True,
)
def heartbeat_sweep() -> dict[str, int]:
    """Apply every active device's heartbeat policy (every 20 s on the beat schedule; a
    missed run is simply done by the next one)."""
    result = wellness.heartbeat_sweep()
    return {"offline": len(result.offline), "online": len(result.online)}
