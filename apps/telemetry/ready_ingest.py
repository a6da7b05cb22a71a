"""Start-up hook of the ingest pages, called from ``TelemetryConfig.ready()``."""

from __future__ import annotations


def ready() -> None:
    """The portal navigation entries of the dead letters and the operations page."""
    from apps.accounts.portal import NavItem, register

    from .views_operations import OPERATIONS_PERMISSION

    register(
        NavItem(
            "Dead letters", "telemetry:dead-letters", "telemetry.view", section="Fleet", position=95
        )
    )
    register(
        NavItem(
            "Operations",
            "telemetry:operations",
            OPERATIONS_PERMISSION,
            scoped=False,
            section="Organization",
            position=900,  # after the organization's own pages
        )
    )
