from __future__ import annotations

from django.apps import AppConfig


class ChangesConfig(AppConfig):
    name = "apps.changes"
    label = "changes"
    verbose_name = "Change requests"
    default_auto_field = "django.db.models.BigAutoField"
