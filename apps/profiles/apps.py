from __future__ import annotations

from django.apps import AppConfig


class ProfilesConfig(AppConfig):
    name = "apps.profiles"
    label = "profiles"
    verbose_name = "Device profiles"

    def ready(self) -> None:
        from apps.accounts.portal import NavItem, register

        register(NavItem("Profiles", "profiles:list", "profile.view", section="Fleet", position=40))
        register(
            NavItem(
                "Provisioning",
                "profiles:provisioning",
                "provisioningtemplate.view",
                section="Fleet",
                position=45,
            )
        )
