from __future__ import annotations

from django.apps import AppConfig


class CommandsConfig(AppConfig):
    name = "apps.commands"
    label = "commands"
    verbose_name = "Remote commands"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.changes import kinds
        from apps.devices import downlinks, uplinks

        from .kind import REF_TYPE, CommandKind
        from .services import commands_mark_sent
        from .uplink import TOPIC_FILTER, handle_results

        kinds.register(CommandKind())
        downlinks.on_published(REF_TYPE, commands_mark_sent)
        uplinks.register("commands", TOPIC_FILTER, handle_results)
