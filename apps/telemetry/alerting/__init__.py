"""Alerting: rules, in-batch and periodic evaluation, the state-change consumer, and the alert
lifecycle. The ingest pipeline calls ``evaluate_batch`` inside its transaction."""

from __future__ import annotations

from .evaluate import evaluate_batch

__all__ = ["evaluate_batch"]
