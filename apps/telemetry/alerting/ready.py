"""Start-up hook of alerting, called from ``TelemetryConfig.ready()``."""

from __future__ import annotations


def ready() -> None:
    """Register the state-change consumer, the periodic tasks and the portal entry."""
    from apps.accounts.portal import NavItem, register

    from . import periodic, state  # noqa: F401  (their decorators register consumer and tasks)

    register(NavItem("Alerts", "alerts:list", "alert.view", section="Fleet", position=15))
