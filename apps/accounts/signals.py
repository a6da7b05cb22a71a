"""Audit rows for writes made inside django-allauth (a third-party app whose views we do not
own): sign-up, password and email changes, and MFA authenticators."""

from __future__ import annotations

from typing import Any

from allauth.account import signals as account_signals
from allauth.mfa import signals as mfa_signals
from django.dispatch import receiver

from apps.core import audit
from apps.core.actors import Actor, ActorKind

from .models import User


def _record(user: User, action: str, changes: dict[str, Any]) -> None:
    actor = Actor(kind=ActorKind.USER, label=user.email, user_id=user.pk, source="portal")
    audit.record(actor=actor, action=action, obj=user, changes=changes)


@receiver(account_signals.user_signed_up)
def _signed_up(sender: Any, request: Any, user: User, **kwargs: Any) -> None:
    _record(user, "user.signup", {"email": [None, user.email]})


@receiver(account_signals.password_changed)
@receiver(account_signals.password_set)
@receiver(account_signals.password_reset)
def _password(sender: Any, request: Any, user: User, **kwargs: Any) -> None:
    _record(user, "user.password_change", {"password": ["(set)", "(set)"]})


@receiver(account_signals.email_confirmed)
def _email_confirmed(sender: Any, request: Any, email_address: Any, **kwargs: Any) -> None:
    _record(email_address.user, "user.email_verified", {"email": [None, email_address.email]})


@receiver(mfa_signals.authenticator_added)
def _authenticator_added(
    sender: Any, request: Any, user: User, authenticator: Any, **kwargs: Any
) -> None:
    _record(user, "user.mfa_added", {"authenticator": [None, authenticator.type]})


@receiver(mfa_signals.authenticator_removed)
def _authenticator_removed(
    sender: Any, request: Any, user: User, authenticator: Any, **kwargs: Any
) -> None:
    _record(user, "user.mfa_removed", {"authenticator": [authenticator.type, None]})


@receiver(mfa_signals.authenticator_reset)
def _authenticator_reset(
    sender: Any, request: Any, user: User, authenticator: Any, **kwargs: Any
) -> None:
    _record(user, "user.mfa_reset", {"authenticator": [authenticator.type, authenticator.type]})
