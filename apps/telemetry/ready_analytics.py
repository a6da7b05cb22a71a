"""Start-up hook of analytics, called from ``TelemetryConfig.ready()``."""

from __future__ import annotations


def ready() -> None:
    """The fleet dashboard's navigation entry, first of the Fleet section."""
    from apps.accounts.portal import NavItem, register

    register(
        NavItem(
            "Fleet dashboard", "analytics:dashboard", "device.view", section="Fleet", position=5
        )
    )
