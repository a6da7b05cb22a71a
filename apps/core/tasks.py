"""Thin Celery entry points for the outbox."""

from __future__ import annotations

from celery import shared_task
from django.db.models import Q
from django.utils import timezone

from . import events
from .models import DeliveryStatus, EventDelivery


@shared_task(name="core.dispatch_outbox", soft_time_limit=55, time_limit=60)
def dispatch_outbox() -> int:
    """Deliver due outbox rows until none is left or the time budget is spent."""
    started = timezone.now()
    total = 0
    while (timezone.now() - started).total_seconds() < 45:
        attempted = events.dispatch(limit=100)
        total += attempted
        if attempted == 0:
            break
    return total


@shared_task(name="core.sweep_outbox", soft_time_limit=20, time_limit=30)
def sweep_outbox() -> bool:
    """Periodic safety net: wake the dispatcher when anything is due or its lease expired."""
    now = timezone.now()
    due = EventDelivery.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now),
        status=DeliveryStatus.PENDING,
        next_attempt_at__lte=now,
    ).exists()
    if due:
        dispatch_outbox.delay()
    return due
