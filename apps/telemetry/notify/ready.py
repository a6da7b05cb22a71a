"""Start-up hook of the notifications, called from ``TelemetryConfig.ready()``."""

from __future__ import annotations


def ready() -> None:
    """Register the outbox consumers and the portal navigation entries."""
    from apps.accounts.portal import NavItem, register

    from . import deliver, fanout  # noqa: F401  (their decorators register the consumers)

    register(
        NavItem(
            "Notification channels",
            "notify:channels",
            "notificationchannel.view",
            section="Fleet",
            position=90,
        )
    )
    register(
        NavItem(
            "Notifications",
            "notify:inbox",
            "alert.view",
            scoped=False,
            section="Account",
            position=10,
        )
    )
    # the preferences are one click away, from the inbox and from every email
