from __future__ import annotations

from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    name = "apps.telemetry"
    label = "telemetry"
    verbose_name = "Telemetry and wellness"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .notify.ready import ready as notify_ready

        notify_ready()
        from .alerting.ready import ready as alerting_ready

        alerting_ready()
        from .ready_ingest import ready as ingest_ready

        ingest_ready()
        from .ready_analytics import ready as analytics_ready

        analytics_ready()
