"""A test-only organization-owned model proving scoping and django-guardian direct grants.

Device groups (the registry) are the first production user of the same mechanism.
"""

from __future__ import annotations

from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from apps.core.models import OrganizationOwned


class Widget(OrganizationOwned):
    name = models.CharField(max_length=100)

    scope_resource = "devicegroup"
    scope_user_grant_model = "testapp.WidgetUserObjectPermission"

    def __str__(self) -> str:
        return self.name


class WidgetUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Widget, on_delete=models.CASCADE)


class WidgetGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Widget, on_delete=models.CASCADE)
