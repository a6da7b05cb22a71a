from __future__ import annotations

from django.apps import AppConfig


class ConfigurationConfig(AppConfig):
    name = "apps.configuration"
    label = "configuration"
    verbose_name = "Configuration management"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.accounts.portal import NavItem, register
        from apps.changes import kinds
        from apps.devices import uplinks

        from . import reconcile, tasks, uplink  # noqa: F401  (consumer, Celery task)
        from .kind import ConfigurationKind

        kinds.register(ConfigurationKind())
        uplinks.register("configuration", "config/reported", uplink.handle_reported)
        register(
            NavItem(
                "Configuration",
                "configuration:overview",
                "configuration.view",
                section="Fleet",
                position=85,
            )
        )
