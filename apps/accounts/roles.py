"""Roles and the permissions each one grants: the reviewable table, in code.

A permission is ``<resource>.<action>``. A role held on an organization grants its permissions
on that organization and every organization below it. Later capabilities add their resources
here (the ones already named are reserved for them so role semantics do not shift later).
"""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    OPERATOR = "operator", "Operator"
    APPROVER = "approver", "Approver"
    TECHNICIAN = "technician", "Technician"
    VIEWER = "viewer", "Viewer"
    BILLING = "billing", "Billing"


def _crud(resource: str, *extra: str) -> set[str]:
    return {f"{resource}.{action}" for action in ("view", "add", "change", "delete", *extra)}


def _view(*resources: str) -> set[str]:
    return {f"{resource}.view" for resource in resources}


# Fleet resources that every operational role can see.
FLEET = (
    "organization",
    "device",
    "devicegroup",
    "profile",
    "command",
    "changerequest",
    "configuration",
    "deployment",
    "artifact",
    "alert",
    "alertrule",
    "telemetry",
    "event",
    "job",
    "credential",
    "certificateauthority",
    "enrollmentpolicy",
    "provisioningtemplate",
    "notificationchannel",
)

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset(
        _view("job")
        | _crud("organization", "move")
        | _crud("membership")
        | _crud("invitation")
        | _crud("apikey")
        | {"auditlog.view", "auditlog.export", "event.view", "event.redeliver"}
        | _crud("device", "transition", "transfer")
        | _crud("devicegroup", "share")
        | _crud("profile")
        | _crud("credential")
        | _crud("certificateauthority")
        | _crud("enrollmentpolicy")
        | _crud("provisioningtemplate")
        | _crud("command", "execute")
        | _crud("changerequest", "execute")
        | {"changerequest.approve"}
        | _crud("configuration")
        | _crud("deployment")
        | _crud("artifact")
        | _crud("alert")
        | _crud("alertrule")
        | _crud("notificationchannel")
        | _view("telemetry")
        | {"telemetry.export", "telemetry.replay"}
        | _crud("integration")
        | _crud("secret")
        | _crud("billing")
    ),
    Role.ADMIN: frozenset(
        _view(*FLEET)
        | {"organization.add", "organization.change", "organization.move"}
        | _crud("membership")
        | _crud("invitation")
        | _crud("apikey")
        | {"auditlog.view", "auditlog.export", "event.redeliver"}
        | _crud("device", "transition", "transfer")
        | _crud("devicegroup", "share")
        | _crud("profile")
        | _crud("credential")
        | _crud("certificateauthority")
        | _crud("enrollmentpolicy")
        | _crud("provisioningtemplate")
        | _crud("command", "execute")
        | _crud("changerequest", "execute")
        | {"changerequest.approve"}
        | _crud("configuration")
        | _crud("deployment")
        | _crud("artifact")
        | _crud("alert")
        | _crud("alertrule")
        | _crud("notificationchannel")
        | {"telemetry.export", "telemetry.replay"}
        | _crud("integration")
        | _crud("secret")
        | {"billing.view", "membership.view"}
    ),
    Role.OPERATOR: frozenset(
        _view(*FLEET)
        | {"membership.view"}
        | {"device.add", "device.change", "device.transition"}
        | {"credential.add", "credential.delete"}
        | _crud("devicegroup")
        | {
            "command.add",
            "command.execute",
            "changerequest.add",
            "changerequest.change",
            "changerequest.execute",
        }
        | {"configuration.add", "configuration.change"}
        | {"deployment.add", "deployment.change"}
        | {"artifact.add"}
        | {"alert.change", "alertrule.add", "alertrule.change"}
        | {"telemetry.export", "telemetry.replay"}
    ),
    Role.APPROVER: frozenset(
        _view(*FLEET) | {"membership.view", "changerequest.approve", "auditlog.view"}
    ),
    Role.TECHNICIAN: frozenset(
        _view(*FLEET)
        | {"device.change", "device.transition", "command.add", "changerequest.add", "alert.change"}
    ),
    Role.VIEWER: frozenset(_view(*FLEET)),
    Role.BILLING: frozenset(
        {"organization.view", "billing.view", "billing.change", "billing.add", "billing.delete"}
    ),
}

ALL_PERMISSIONS: frozenset[str] = frozenset().union(*ROLE_PERMISSIONS.values())


def permissions_for(role: str) -> frozenset[str]:
    return ROLE_PERMISSIONS[role]


def can_grant(granter_permissions: frozenset[str], role: str) -> bool:
    """A role may be granted only by someone who already holds every permission it carries."""
    return ROLE_PERMISSIONS[role] <= granter_permissions
