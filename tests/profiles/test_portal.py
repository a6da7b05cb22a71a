"""Portal pages of the catalog: anonymous -> login, sibling -> 404, no permission -> 403,
allowed -> the exact state."""

from __future__ import annotations

import json

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from apps.accounts.roles import Role
from apps.core.models import AuditLog
from apps.profiles.models import DeviceProfile, ProfileVersion
from tests.factories import make_member

from .helpers import COMMANDS, TELEMETRY, make_device, make_profile, version_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def profile(tree) -> DeviceProfile:
    return make_profile(
        tree["acme"],
        "Door Sensor",
        telemetry_schema=TELEMETRY,
        command_catalog=COMMANDS,
        heartbeat_interval_seconds=30,
        heartbeat_missed_beats=4,
    )


def urls(tree, profile) -> dict[str, str]:
    acme = tree["acme"].pk
    return {
        "list": reverse("profiles:list", kwargs={"organization_id": acme}),
        "create": reverse("profiles:create", kwargs={"organization_id": acme}),
        "detail": reverse("profiles:detail", kwargs={"profile_id": profile.pk}),
        "edit": reverse("profiles:edit", kwargs={"profile_id": profile.pk}),
    }


def form_data(**overrides) -> dict[str, str]:
    data = {
        "name": "Thermostat",
        "slug": "",
        "description": "Heats",
        "connection_type": "both",
        "hardware_revisions": "rev-a, rev-b",
        "capabilities": "ota",
        "heartbeat_interval_seconds": "45",
        "heartbeat_missed_beats": "2",
        "attributes_schema": '{"type": "object"}',
        "telemetry_schema": json.dumps(TELEMETRY),
        "command_catalog": json.dumps(COMMANDS),
        "configuration_schema": '{"type": "object"}',
    }
    return data | overrides


@pytest.mark.parametrize("page", ["list", "create", "detail", "edit"])
def test_an_anonymous_visitor_goes_to_the_login_page(client, tree, profile, page):
    url = urls(tree, profile)[page]
    response = client.get(url)
    assert (response.status_code, response.url) == (302, f"/accounts/login/?next={url}")


@pytest.mark.parametrize("page", ["list", "create", "detail", "edit"])
def test_a_sibling_manufacturer_gets_404(client, tree, profile, page):
    client.force_login(make_member(tree["globex"], Role.OWNER))
    assert client.get(urls(tree, profile)[page]).status_code == 404


@pytest.mark.parametrize(
    ("page", "role"), [("list", Role.BILLING), ("create", Role.VIEWER), ("edit", Role.OPERATOR)]
)
def test_a_role_without_the_permission_gets_403(client, tree, profile, page, role):
    client.force_login(make_member(tree["acme"], role))
    assert client.get(urls(tree, profile)[page]).status_code == 403


def test_a_customer_sees_the_shared_profile_read_only_and_cannot_edit_it(client, tree, profile):
    own = make_profile(tree["retail"], "Retail Kiosk")
    client.force_login(make_member(tree["retail"], Role.OWNER))
    response = client.get(reverse("profiles:list", kwargs={"organization_id": tree["retail"].pk}))
    rows = [
        (row["profile"].name, row["shared"], row["can_edit"], row["version"].number)
        for row in response.context["rows"]
    ]
    assert rows == [("Door Sensor", True, False, 1), ("Retail Kiosk", False, True, 1)]
    assert "Shared by Acme</span>" in response.content.decode()
    detail = client.get(reverse("profiles:detail", kwargs={"profile_id": profile.pk}))
    assert "Shared by Acme: read-only." in detail.content.decode()
    assert client.get(urls(tree, profile)["edit"]).status_code == 403
    posted = client.post(urls(tree, profile)["edit"], form_data(name="Mine"))
    assert posted.status_code == 403
    assert DeviceProfile.objects.get(pk=profile.pk).name == "Door Sensor"
    assert own.organization_id == tree["retail"].pk


def test_the_detail_page_shows_metrics_commands_and_heartbeat(client, tree, profile):
    client.force_login(make_member(tree["acme"], Role.VIEWER))
    response = client.get(urls(tree, profile)["detail"])
    page = response.content.decode()
    assert [m["name"] for m in response.context["metrics"]] == ["temperature", "door_open"]
    assert [c["name"] for c in response.context["commands"]] == ["reboot", "factory-reset"]
    assert "every 30 s; offline after 4 missed (120 s)" in page
    assert "°F → °C" in page
    assert "Critical (requires approval)" in page
    assert (response.context["can_edit"], response.context["shared"]) == (False, False)


def test_creating_a_profile(client, tree):
    owner = make_member(tree["acme"], Role.OWNER, "owner@acme.test")
    client.force_login(owner)
    response = client.post(
        reverse("profiles:create", kwargs={"organization_id": tree["acme"].pk}), form_data()
    )
    profile = DeviceProfile.objects.get()
    assert (response.status_code, response.url) == (
        302,
        reverse("profiles:detail", kwargs={"profile_id": profile.pk}),
    )
    version = version_of(profile)
    assert (profile.name, profile.slug, profile.description, profile.organization_id) == (
        "Thermostat",
        "thermostat",
        "Heats",
        tree["acme"].pk,
    )
    assert (
        version.connection_type,
        version.hardware_revisions,
        version.capabilities,
        version.heartbeat_interval_seconds,
        version.heartbeat_missed_beats,
        version.telemetry_schema,
        version.command_catalog,
    ) == ("both", ["rev-a", "rev-b"], ["ota"], 45, 2, TELEMETRY, COMMANDS)
    audit = AuditLog.objects.get(action="profile.create")
    assert (audit.actor_label, audit.source) == ("owner@acme.test", "portal")


def test_the_editor_shows_errors_per_field_and_saves_nothing(client, tree):
    client.force_login(make_member(tree["acme"], Role.OWNER))
    response = client.post(
        reverse("profiles:create", kwargs={"organization_id": tree["acme"].pk}),
        form_data(
            attributes_schema="{not json",
            telemetry_schema='{"metrics": [{"name": "t", "type": "complex"}]}',
        ),
    )
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "attributes_schema": [
            "Not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)"
        ]
    }
    response = client.post(
        reverse("profiles:create", kwargs={"organization_id": tree["acme"].pk}),
        form_data(telemetry_schema='{"metrics": [{"name": "t", "type": "complex"}]}'),
    )
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "telemetry_schema": ["metrics[0] (t): unknown type 'complex'."]
    }
    assert 'id="id_telemetry_schema-error"' in response.content.decode()
    assert DeviceProfile.objects.count() == 0


def test_saving_a_profile_in_use_makes_version_2(client, tree, profile):
    device = make_device(version_of(profile), tree["retail"])
    client.force_login(make_member(tree["acme"], Role.ADMIN))
    edit = client.get(urls(tree, profile)["edit"])
    data = {k: v.value() or "" for k, v in ((f.name, f) for f in edit.context["form"])}
    data["heartbeat_missed_beats"] = "9"
    response = client.post(urls(tree, profile)["edit"], data)
    assert (response.status_code, response.url) == (302, urls(tree, profile)["detail"])
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Version 1 is in use, so the changes were saved as version 2. "
        "Devices move to it only when you upgrade them."
    ]
    profile.refresh_from_db()
    assert profile.latest_number == 2
    assert list(
        ProfileVersion.objects.filter(profile=profile)
        .order_by("number")
        .values_list("number", "heartbeat_missed_beats", "telemetry_schema")
    ) == [(1, 4, TELEMETRY), (2, 9, TELEMETRY)]
    device.refresh_from_db()
    assert device.profile_version.number == 1
    detail = client.get(urls(tree, profile)["detail"])
    assert [(v.number, v.in_use) for v in detail.context["versions"]] == [(2, False), (1, True)]
    old = client.get(urls(tree, profile)["detail"], {"version": "1"})
    assert (old.context["version"].number, old.context["version"].heartbeat_missed_beats) == (1, 4)
    assert "You are looking at version 1; the latest is version 2." in old.content.decode()


def test_saving_an_unused_profile_edits_it_in_place(client, tree, profile):
    client.force_login(make_member(tree["acme"], Role.OWNER))
    edit = client.get(urls(tree, profile)["edit"])
    data = {f.name: f.value() or "" for f in edit.context["form"]}
    response = client.post(urls(tree, profile)["edit"], data | {"name": "Door Sensor 2"})
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["Door Sensor 2 saved."]
    assert list(ProfileVersion.objects.filter(profile=profile).values_list("number")) == [(1,)]
    assert DeviceProfile.objects.get(pk=profile.pk).name == "Door Sensor 2"


def test_the_navigation_links_to_the_catalog(client, tree):
    client.force_login(make_member(tree["acme"], Role.VIEWER))
    response = client.get(reverse("portal:dashboard", kwargs={"organization_id": tree["acme"].pk}))
    labels = [item["label"] for item in response.context["nav_items"]]
    assert "Profiles" in labels
    item = next(i for i in response.context["nav_items"] if i["label"] == "Profiles")
    assert item["url"] == f"/o/{tree['acme'].pk}/profiles/"
