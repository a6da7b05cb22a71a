"""Alert rules, the per-device state of their conditions, and alerts."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from apps.core.models import BaseModel, OrganizationOwned
from apps.core.scoping import ScopedManager

from ..choices import AlertStatus, RuleKind, Severity

__all__ = ["Alert", "AlertCondition", "AlertRule"]


class AlertRule(OrganizationOwned):
    """A condition that opens an alert. Applies to the devices of its organization (and below),
    narrowed by an optional profile, group or single device.

    ``condition`` holds the kind's parameters, validated by ``apps.telemetry.alerting.rules``
    (docs/alerts.md):

    - threshold: ``{"metric": "temperature", "operator": "gt", "value": 80}``
      (operators gt, gte, lt, lte, eq, ne)
    - range: ``{"metric": "...", "low": 10, "high": 30, "inside": false}``
    - missing_data: ``{"metric": "..." (optional), "seconds": 600}``
    - missed_heartbeats: ``{}`` (the device's heartbeat policy decides)
    - state_change: ``{"field": "connectivity" | "state", "to": "offline", "from": "" (any)}``
    - event_match: ``{"type": "door.*", "min_severity": "error", "clear_type": "door.closed"}``
    - fleet_offline: ``{"percent": 20, "minutes": 10}`` (needs a profile or a group)

    ``open_after_seconds`` (duration) must pass with the condition true before an alert opens;
    ``clear_after_seconds`` with it false before the alert resolves itself: flapping is damped.
    """

    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    kind = models.CharField(max_length=24, choices=RuleKind.choices)
    condition = models.JSONField(default=dict)
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    open_after_seconds = models.PositiveIntegerField(default=0)
    clear_after_seconds = models.PositiveIntegerField(default=0)
    auto_resolve = models.BooleanField(default=True)
    profile = models.ForeignKey(
        "profiles.DeviceProfile",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="alert_rules",
    )
    group = models.ForeignKey(
        "devices.DeviceGroup",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="alert_rules",
    )
    device = models.ForeignKey(
        "devices.Device",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="alert_rules",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    scope_resource = "alertrule"

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="telemetry_rule_name")
        ]
        indexes = [models.Index(fields=["organization", "kind"], name="telemetry_rule_kind")]

    def __str__(self) -> str:
        return self.name


class AlertCondition(models.Model):
    """Where one rule's condition stands for one device (or for the fleet, ``device`` null):
    since when it has been true (``breaching_since``) or false again (``clearing_since``), and
    the newest sample time it has seen, so older (late) samples never move it."""

    id = models.BigAutoField(primary_key=True)
    # Indexed: (rule, device) by the unique constraint and device by its own index, nothing
    # else. Every batch updates these rows; no updated column is indexed and the table keeps
    # free room in its pages (fillfactor, migration 0004), so the updates are HOT.
    rule = models.ForeignKey(
        AlertRule, on_delete=models.CASCADE, related_name="conditions", db_index=False
    )
    device = models.ForeignKey(
        "devices.Device",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
    )
    breaching = models.BooleanField(default=False)
    breaching_since = models.DateTimeField(null=True, blank=True)
    clearing_since = models.DateTimeField(null=True, blank=True)
    last_value = models.JSONField(null=True, blank=True)
    last_ts = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "device"],
                name="telemetry_condition_once",
                nulls_distinct=False,
            )
        ]
        indexes = [models.Index(fields=["device"], name="telemetry_condition_device")]

    def __str__(self) -> str:
        return f"{self.rule_id}/{self.device_id} {'breaching' if self.breaching else 'clear'}"


class Alert(BaseModel):
    """An alert: at most one not-yet-resolved alert per rule and device (or per fleet rule).

    Lifecycle: open -> acknowledged -> resolved (or open -> resolved); who acknowledged or
    resolved it is recorded (``resolved_by`` null with ``resolved_at`` set: the condition
    cleared by itself)."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="+"
    )
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    device = models.ForeignKey(
        "devices.Device", on_delete=models.CASCADE, null=True, blank=True, related_name="alerts"
    )
    severity = models.CharField(max_length=16, choices=Severity.choices)
    status = models.CharField(max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN)
    message = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    objects = ScopedManager()
    scope_resource = "alert"

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "device"],
                name="telemetry_alert_unresolved_once",
                condition=~models.Q(status="resolved"),
                nulls_distinct=False,
            )
        ]
        indexes = [
            models.Index(
                fields=["organization", "status", "-opened_at"], name="telemetry_alert_org"
            ),
            models.Index(
                fields=["device"],
                name="telemetry_alert_device_open",
                condition=~models.Q(status="resolved"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.severity} {self.message}"
