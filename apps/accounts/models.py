"""Users, the organization tree, memberships, invitations and API keys."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from apps.core.ids import uuid7
from apps.core.models import BaseModel, OrganizationOwned
from apps.core.scoping import ScopedManager

from .roles import Role

__all__ = ["APIKey", "Invitation", "Membership", "Organization", "User"]


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Signs in with an email address; belongs to organizations via memberships."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False, help_text="May sign in to the admin site.")
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci")]

    def __str__(self) -> str:
        return self.email

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = self.email.strip().lower()
        super().save(*args, **kwargs)

    def get_full_name(self) -> str:
        return self.full_name or self.email

    def get_short_name(self) -> str:
        return self.full_name.split(" ")[0] if self.full_name else self.email


class Organization(BaseModel):
    """A node of the tenant tree (platform -> manufacturer -> customer -> site ...).

    ``path`` is a materialized path: the ancestors' ids and this one's, each followed by a
    ``/``. A subtree is one indexed prefix query (``path LIKE 'prefix%'``).
    """

    class Kind(models.TextChoices):
        PLATFORM = "platform", "Platform"
        MANUFACTURER = "manufacturer", "Manufacturer"
        DISTRIBUTOR = "distributor", "Distributor"
        CUSTOMER = "customer", "Customer"
        SITE = "site", "Site"

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.CUSTOMER)
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="children"
    )
    path = models.CharField(max_length=2000, unique=True, editable=False)
    depth = models.PositiveSmallIntegerField(default=0, editable=False)
    require_mfa = models.BooleanField(
        default=False, help_text="Members must use two-factor authentication."
    )
    is_active = models.BooleanField(default=True)
    auth_group = models.OneToOneField(
        "auth.Group",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="organization",
        help_text="Stands for the organization in django-guardian grants (objects shared with it).",
    )

    objects = ScopedManager()
    scope_resource = "organization"
    scope_path_field = "path"

    class Meta:
        ordering = ["path"]
        indexes = [
            models.Index(
                fields=["path"], name="accounts_org_path_prefix", opclasses=["varchar_pattern_ops"]
            )
        ]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def segment(organization_id: Any) -> str:
        return f"{organization_id.hex}/"

    def is_descendant_of(self, other: Organization) -> bool:
        return self.path.startswith(other.path) and self.pk != other.pk


class Membership(OrganizationOwned):
    """A user's role on an organization, which holds on its whole subtree."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    organization = models.ForeignKey(
        Organization, on_delete=models.PROTECT, related_name="memberships"
    )

    scope_resource = "membership"

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="accounts_one_role")
        ]

    def __str__(self) -> str:
        return f"{self.user} — {self.get_role_display()} of {self.organization}"


class Invitation(OrganizationOwned):
    """An invitation to join an organization with a role; accepted through a one-time link."""

    email = models.EmailField()
    role = models.CharField(max_length=20, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    scope_resource = "invitation"

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.email} → {self.organization} ({self.role})"

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.accepted_at:
            return "accepted"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"


class APIKey(OrganizationOwned):
    """A machine credential for one organization's subtree, with a role and optional narrowing.

    The secret is shown once. Stored: a public prefix (for lookup) and the SHA-256 of the whole
    token; compared in constant time.
    """

    name = models.CharField(max_length=100)
    role = models.CharField(max_length=20, choices=Role.choices)
    permissions = ArrayField(
        models.CharField(max_length=64),
        default=list,
        blank=True,
        help_text="When set, the key holds only these of its role's permissions.",
    )
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    scope_resource = "apikey"

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_usable(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
