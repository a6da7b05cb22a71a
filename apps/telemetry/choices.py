"""Choices of the telemetry app."""

from __future__ import annotations

from django.db import models


class SampleKind(models.IntegerChoices):
    """Which uplink topic a stored sample came from (part of the de-duplication key)."""

    TELEMETRY = 1, "Telemetry"
    HEARTBEAT = 2, "Heartbeat"


class Source(models.TextChoices):
    MQTT = "mqtt", "MQTT"
    HTTPS = "https", "HTTPS device API"


class DeadLetterReason(models.TextChoices):
    MALFORMED_JSON = "malformed_json", "Malformed JSON"
    BAD_TOPIC = "bad_topic", "Unknown topic"
    UNKNOWN_DEVICE = "unknown_device", "Unknown device"
    DEVICE_STATE = "device_state", "Device decommissioned, suspended or not in service"
    MISSING_COUNTERS = "missing_counters", "Missing or invalid boot / seq"
    BAD_TIMESTAMP = "bad_timestamp", "Missing or invalid timestamp"
    TIMESTAMP_RANGE = "timestamp_range", "Timestamp too far in the past or future"
    SCHEMA = "schema", "Does not match the profile's telemetry schema"
    UNKNOWN_METRIC = "unknown_metric", "Metric not in the profile's telemetry schema"
    OVERSIZED = "oversized", "Message or batch too large"
    REFUSED = "refused", "Refused by the feature it is for"


class DeadLetterStatus(models.TextChoices):
    NEW = "new", "New"
    REPLAYED = "replayed", "Replayed"
    DISCARDED = "discarded", "Discarded"


class Severity(models.TextChoices):
    """Alert severities, most severe first (``RANK`` orders them)."""

    CRITICAL = "critical", "Critical"
    MAJOR = "major", "Major"
    MINOR = "minor", "Minor"
    WARNING = "warning", "Warning"
    INFO = "info", "Info"


SEVERITY_RANK: dict[str, int] = {
    Severity.CRITICAL: 5,
    Severity.MAJOR: 4,
    Severity.MINOR: 3,
    Severity.WARNING: 2,
    Severity.INFO: 1,
}


class Health(models.TextChoices):
    """A device's health: derived from its connectivity and its open alerts."""

    OK = "ok", "OK"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"
    OFFLINE = "offline", "Offline"
    UNKNOWN = "unknown", "Unknown"


class RuleKind(models.TextChoices):
    THRESHOLD = "threshold", "Threshold on a metric"
    RANGE = "range", "Metric inside / outside a range"
    MISSING_DATA = "missing_data", "No data for a while"
    MISSED_HEARTBEATS = "missed_heartbeats", "Missed heartbeats"
    STATE_CHANGE = "state_change", "Connectivity or lifecycle state change"
    EVENT_MATCH = "event_match", "Device event matches"
    FLEET_OFFLINE = "fleet_offline", "Share of a fleet offline"


class AlertStatus(models.TextChoices):
    OPEN = "open", "Open"
    ACKNOWLEDGED = "acknowledged", "Acknowledged"
    RESOLVED = "resolved", "Resolved"


class ChannelKind(models.TextChoices):
    WEBHOOK = "webhook", "Webhook (Standard Webhooks)"
    SLACK = "slack", "Slack-compatible incoming webhook"


class NotificationMedium(models.TextChoices):
    PORTAL = "portal", "In the portal"
    EMAIL = "email", "Email"
