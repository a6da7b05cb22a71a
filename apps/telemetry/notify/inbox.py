"""A person's side of notifications: the inbox (reads and marks) and their preferences.

The inbox is scoped to its owner, and further to the organizations where the owner holds
``alert.view`` today: someone who left an organization no longer reads its alerts there.
API keys have no inbox and no preferences (``NoInbox``).
"""

from __future__ import annotations

import zoneinfo
from datetime import time
from functools import cache
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone as django_timezone

from apps.accounts.models import User
from apps.core import audit
from apps.core.actors import Actor
from apps.core.scoping import LITERAL_IDS_LIMIT, organization_ids_under

from ..choices import NotificationMedium, Severity
from ..models import Notification, NotificationPreference

PREFERENCE_FIELDS = ("portal", "email", "min_severity", "quiet_start", "quiet_end", "timezone")


class NoInbox(PermissionDenied):
    """The actor is not a person (an API key, a device, the system)."""


@cache
def timezone_names() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def _owner_id(actor: Actor) -> Any:
    if actor.user_id is None:
        raise NoInbox("Notifications belong to people: API keys have no inbox.")
    return actor.user_id


def inbox(*, actor: Actor) -> QuerySet[Notification]:
    """The actor's own in-portal notifications, newest first."""
    rows = Notification.objects.filter(user_id=_owner_id(actor), medium=NotificationMedium.PORTAL)
    if actor.is_platform_staff:
        return rows
    known = actor.subtree_ids_for("alert.view")
    if known is not None and len(known) <= LITERAL_IDS_LIMIT:
        return rows.filter(organization_id__in=known)
    paths = actor.paths_for("alert.view")
    if not paths:
        return rows.none()
    return rows.filter(organization_id__in=organization_ids_under(paths))


def unread_count(*, actor: Actor) -> int:
    return inbox(actor=actor).filter(read_at=None).count()


@transaction.atomic
def notification_mark_read(*, actor: Actor, notification: Notification) -> Notification:
    """Mark one of the actor's notifications read (once: the first read time stays)."""
    inbox(actor=actor).filter(pk=notification.pk, read_at=None).update(
        read_at=django_timezone.now()
    )
    notification.refresh_from_db(fields=["read_at"])
    return notification


@transaction.atomic
def notifications_mark_all_read(*, actor: Actor) -> int:
    """Mark every unread notification of the actor's inbox read; returns how many."""
    return inbox(actor=actor).filter(read_at=None).update(read_at=django_timezone.now())


def preference_for(*, actor: Actor) -> NotificationPreference:
    """The actor's saved preferences, or the defaults (unsaved) when they never chose."""
    user_id = _owner_id(actor)
    found = NotificationPreference.objects.filter(user_id=user_id).first()
    return found if found is not None else NotificationPreference(user_id=user_id)


def _values(preference: NotificationPreference) -> dict[str, Any]:
    values = audit.snapshot(preference, PREFERENCE_FIELDS)
    return {key: v.isoformat() if isinstance(v, time) else v for key, v in values.items()}


@transaction.atomic
def preference_update(
    *,
    actor: Actor,
    portal: bool,
    email: bool,
    min_severity: str,
    quiet_start: time | None,
    quiet_end: time | None,
    timezone: str,
) -> NotificationPreference:
    """Save the actor's own preferences (audited, without an organization)."""
    if (quiet_start is None) != (quiet_end is None):
        raise ValidationError(
            {"quiet_end": "Give both the start and the end of the quiet hours, or neither."}
        )
    if timezone not in timezone_names():
        raise ValidationError({"timezone": f"Unknown time zone {timezone!r}."})
    if min_severity not in Severity.values:
        raise ValidationError({"min_severity": f"Unknown severity {min_severity!r}."})
    before = _values(preference_for(actor=actor))
    user = User.objects.get(pk=_owner_id(actor))
    preference, _ = NotificationPreference.objects.update_or_create(
        user=user,
        defaults={
            "portal": portal,
            "email": email,
            "min_severity": min_severity,
            "quiet_start": quiet_start,
            "quiet_end": quiet_end,
            "timezone": timezone,
        },
    )
    changes = audit.diff(before, _values(preference))
    if changes:
        audit.record(
            actor=actor, action="notificationpreference.change", obj=preference, changes=changes
        )
    return preference
