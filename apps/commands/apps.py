from __future__ import annotations

from django.apps import AppConfig


class CommandsConfig(AppConfig):
    name = "apps.commands"
    label = "commands"
    verbose_name = "Remote commands"
    default_auto_field = "django.db.models.BigAutoField"
