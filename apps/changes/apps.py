from __future__ import annotations

from django.apps import AppConfig


class ChangesConfig(AppConfig):
    name = "apps.changes"
    label = "changes"
    verbose_name = "Change requests"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the Celery tasks and the portal entries (the list, the approvals inbox)."""
        from apps.accounts.portal import NavItem, register

        from . import tasks  # noqa: F401  (registers the Celery tasks)

        register(
            NavItem(
                "Change requests",
                "changes:list",
                "changerequest.view",
                section="Fleet",
                position=80,
            )
        )
        register(
            NavItem(
                "Approvals",
                "changes:inbox",
                "changerequest.approve",
                section="Fleet",
                position=81,
            )
        )
