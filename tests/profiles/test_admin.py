"""The profiles admin: read-only, versions inline, scoped for staff who are not superusers."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.profiles import services
from tests.factories import UserFactory, make_member

from .helpers import make_device, make_profile, version_of

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/profiles/deviceprofile/"


def test_a_superuser_sees_every_profile_with_its_versions_read_only(tree):
    acme = make_profile(tree["acme"], "Door Sensor")
    make_profile(tree["globex"], "Meter")
    make_device(version_of(acme), tree["retail"])
    services.profile_update(actor=SYSTEM, profile=acme, heartbeat_missed_beats=5)
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    listing = client.get(CHANGELIST, {"q": "o"})
    assert sorted(str(p) for p in listing.context["cl"].result_list) == ["Door Sensor", "Meter"]
    page = client.get(f"{CHANGELIST}{acme.pk}/change/")
    assert page.status_code == 200
    inline = page.context["inline_admin_formsets"][0]
    assert [form.original.number for form in inline] == [2, 1]
    assert page.context["has_change_permission"] is False
    assert client.get(f"{CHANGELIST}add/").status_code == 403


def test_staff_see_only_profiles_for_their_actor(tree):
    make_profile(tree["acme"], "Door Sensor")
    make_profile(tree["globex"], "Meter")
    user = make_member(tree["retail"], Role.VIEWER)
    user.is_staff = True
    user.save()
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="profiles", codename="view_deviceprofile")
    )
    client = Client()
    client.force_login(user)
    listing = client.get(CHANGELIST)
    assert [str(p) for p in listing.context["cl"].result_list] == ["Door Sensor"]
