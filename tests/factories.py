"""factory_boy factories and small builders shared by every test module."""

from __future__ import annotations

from typing import Any

import factory

from apps.accounts import services
from apps.accounts.actors import actor_for_user
from apps.accounts.models import Membership, Organization, User
from apps.core.actors import SYSTEM, Actor


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", "correct horse battery")

    @factory.post_generation
    def save_password(obj: User, create: bool, extracted: Any, **kwargs: Any) -> None:
        if create:
            obj.save()


def make_organization(
    name: str,
    parent: Organization | None = None,
    kind: str = Organization.Kind.CUSTOMER,
    **extra: Any,
) -> Organization:
    return services.organization_create(actor=SYSTEM, name=name, parent=parent, kind=kind, **extra)


def make_member(organization: Organization, role: str, email: str | None = None) -> User:
    user = UserFactory(email=email) if email else UserFactory()
    Membership.objects.create(organization=organization, user=user, role=role)
    return user


def actor(user: User) -> Actor:
    return actor_for_user(user)
