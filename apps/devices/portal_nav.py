"""Side-navigation entry of the device-group pages."""

from __future__ import annotations

from apps.accounts.portal import NavItem, register


def register_groups_nav() -> None:
    """Register "Groups" (call from the devices app's ``ready()``)."""
    register(NavItem("Groups", "groups:list", "devicegroup.view"))
