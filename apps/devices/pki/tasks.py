"""Thin Celery entry points of the PKI (imported by ``DevicesConfig.ready``: Celery discovers
only ``<app>.tasks`` modules)."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from . import audit


@shared_task(
    name="devices.certificate_audit",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=30,
    retry_backoff_max=600,
    max_retries=3,
    soft_time_limit=600,
    time_limit=660,
    acks_late=True,
    ignore_result=True,
)
def certificate_audit() -> dict[str, Any]:
    """Daily: one ``certificates.audit`` event per organization with findings (idempotent
    enough: a rerun emits a second, identical summary)."""
    return {"organizations": audit.emit_audit_events()}
