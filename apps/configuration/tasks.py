"""Celery entry points of configuration management."""

from __future__ import annotations

from celery import shared_task

from .reports import drift_sweep


@shared_task(name="configuration.drift_sweep", soft_time_limit=30, ignore_result=True)
def configuration_drift_sweep() -> int:
    """Beat, every 30 s: devices pending for longer than the tolerance become drifted."""
    return drift_sweep()
