from __future__ import annotations

from django.apps import AppConfig


class DevicesConfig(AppConfig):
    name = "apps.devices"
    label = "devices"
    verbose_name = "Devices"

    def ready(self) -> None:
        from apps.accounts.portal import NavItem, register

        for item in (
            NavItem("Devices", "fleet:list", "device.view", section="Fleet", position=10),
            NavItem("Groups", "groups:list", "devicegroup.view", section="Fleet", position=20),
            NavItem("Transfers", "fleet:transfers", "device.view", section="Fleet", position=30),
            NavItem("Import devices", "imports:list", "device.add", section="Fleet", position=50),
            NavItem(
                "Enrollment",
                "enrollment:list",
                "enrollmentpolicy.view",
                section="Fleet",
                position=60,
            ),
            NavItem(
                "Certificates",
                "fleet:certificates",
                "credential.view",
                section="Fleet",
                position=70,
            ),
        ):
            register(item)

        # Celery discovers only tasks.py modules: import the task modules kept elsewhere.
        from . import import_tasks  # noqa: F401
        from .pki import tasks as pki_tasks  # noqa: F401
