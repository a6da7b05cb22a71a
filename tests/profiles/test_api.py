"""The profiles API: the authorization matrix on every endpoint, sharing down the tree, query
budgets and the OpenAPI schema."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import include, path
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema as validate_openapi
from rest_framework.test import APIClient

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog
from apps.devices.models import Device
from apps.profiles import services
from apps.profiles.models import DeviceProfile, ProfileVersion
from tests.authz import Call, Case, assert_authz_matrix, error, iso, last_audit
from tests.factories import make_member

from .helpers import COMMANDS, TELEMETRY, make_device, make_profile, version_of

pytestmark = pytest.mark.django_db

URL = "/api/v1/profiles/"
VERSIONS = "/api/v1/profile-versions/"
VIEWERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.APPROVER, Role.TECHNICIAN, Role.VIEWER}
MANAGERS = {Role.OWNER, Role.ADMIN}
DEVICE_CHANGERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.TECHNICIAN}


def version_json(version: ProfileVersion) -> dict[str, Any]:
    version.refresh_from_db()
    return {
        "id": str(version.pk),
        "profile": str(version.profile_id),
        "number": version.number,
        "hardware_revisions": version.hardware_revisions,
        "connection_type": version.connection_type,
        "capabilities": version.capabilities,
        "attributes_schema": version.attributes_schema,
        "telemetry_schema": version.telemetry_schema,
        "heartbeat_interval_seconds": version.heartbeat_interval_seconds,
        "heartbeat_missed_beats": version.heartbeat_missed_beats,
        "command_catalog": version.command_catalog,
        "configuration_schema": version.configuration_schema,
        "created_by": str(version.created_by_id) if version.created_by_id else None,
        "created_at": iso(version.created_at),
        "updated_at": iso(version.updated_at),
    }


def profile_json(profile: DeviceProfile) -> dict[str, Any]:
    profile.refresh_from_db()
    return {
        "id": str(profile.pk),
        "organization": str(profile.organization_id),
        "name": profile.name,
        "slug": profile.slug,
        "description": profile.description,
        "latest_number": profile.latest_number,
        "latest_version": version_json(version_of(profile, profile.latest_number)),
        "created_at": iso(profile.created_at),
        "updated_at": iso(profile.updated_at),
    }


def acme_profile(world) -> DeviceProfile:
    return make_profile(world.tree["acme"], "Door Sensor", telemetry_schema=TELEMETRY)


def profiles_state(attempt) -> list[tuple[Any, ...]]:
    return list(
        DeviceProfile.objects.order_by("id").values_list("id", "name", "latest_number")
    ) + list(ProfileVersion.objects.order_by("id").values_list("id", "heartbeat_missed_beats"))


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


# --- the matrix --------------------------------------------------------------------------------


def test_list_matrix(authz_world):
    def expect(attempt, response):
        assert response.json()["results"] == [profile_json(attempt.target)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="profile.view",
            allowed=VIEWERS,
            setup=acme_profile,
            request=lambda a: Call("get", URL, {"organization": str(a.world.tree["acme"].pk)}),
            expect=expect,
            listing=True,
        ),
    )


def test_retrieve_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == profile_json(attempt.target)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="profile.view",
            allowed=VIEWERS,
            setup=acme_profile,
            request=lambda a: Call("get", f"{URL}{a.target.pk}/"),
            expect=expect,
        ),
    )


def test_create_matrix(authz_world):
    acme = authz_world.tree["acme"]

    def expect(attempt, response):
        profile = DeviceProfile.objects.get(slug="thermostat")
        assert response.json() == profile_json(profile)
        version = version_of(profile)
        assert (version.command_catalog, version.heartbeat_interval_seconds) == (COMMANDS, 15)
        audit = last_audit("profile.create")
        assert (audit.object_id, audit.actor_label, audit.source) == (
            str(profile.pk),
            attempt.principal.label,
            "api",
        )

    assert_authz_matrix(
        authz_world,
        Case(
            permission="profile.add",
            allowed=MANAGERS,
            request=lambda a: Call(
                "post",
                URL,
                {
                    "organization": str(acme.pk),
                    "name": "Thermostat",
                    "command_catalog": COMMANDS,
                    "heartbeat_interval_seconds": 15,
                },
            ),
            status=201,
            state=profiles_state,
            expect=expect,
        ),
    )


def used_profile(world) -> DeviceProfile:
    profile = acme_profile(world)
    make_device(version_of(profile), world.tree["retail"])
    return profile


def test_update_matrix(authz_world):
    def expect(attempt, response):
        profile = attempt.target
        assert response.json() == profile_json(profile)
        assert (profile.name, profile.latest_number) == ("Door Sensor II", 2)
        assert version_of(profile, 2).heartbeat_missed_beats == 6
        assert version_of(profile, 1).heartbeat_missed_beats == 3
        assert last_audit("profile.version_create").changes == {
            "version": [1, 2],
            "heartbeat_missed_beats": [3, 6],
        }
        assert last_audit("profile.update").changes == {"name": ["Door Sensor", "Door Sensor II"]}

    assert_authz_matrix(
        authz_world,
        Case(
            permission="profile.change",
            allowed=MANAGERS,
            setup=used_profile,
            request=lambda a: Call(
                "patch",
                f"{URL}{a.target.pk}/",
                {"name": "Door Sensor II", "heartbeat_missed_beats": 6},
            ),
            state=profiles_state,
            expect=expect,
        ),
    )


def two_versions(world) -> DeviceProfile:
    profile = used_profile(world)
    services.profile_update(actor=SYSTEM, profile=profile, heartbeat_missed_beats=4)
    return profile


def test_versions_matrix(authz_world):
    def expect(attempt, response):
        profile = attempt.target
        assert response.json()["results"] == [
            version_json(version_of(profile, 2)),
            version_json(version_of(profile, 1)),
        ]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="profile.view",
            allowed=VIEWERS,
            setup=two_versions,
            request=lambda a: Call("get", f"{URL}{a.target.pk}/versions/"),
            expect=expect,
        ),
    )


def test_version_retrieve_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == version_json(attempt.target)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="profile.view",
            allowed=VIEWERS,
            setup=lambda world: version_of(acme_profile(world)),
            request=lambda a: Call("get", f"{VERSIONS}{a.target.pk}/"),
            expect=expect,
        ),
    )


def upgrade_target(world) -> tuple[ProfileVersion, Device]:
    profile = used_profile(world)
    device = Device.objects.get(profile_version__profile=profile)
    version = services.profile_update(actor=SYSTEM, profile=profile, heartbeat_missed_beats=4)
    return version, device


def test_upgrade_devices_matrix(authz_world):
    def expect(attempt, response):
        version, device = attempt.target
        device.refresh_from_db()
        assert response.json() == {"upgraded": 1}
        assert device.profile_version_id == version.pk
        audit = last_audit("device.profile_upgrade")
        assert (audit.object_id, audit.actor_label) == (str(device.pk), attempt.principal.label)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="device.change",
            allowed=DEVICE_CHANGERS,
            setup=upgrade_target,
            request=lambda a: Call(
                "post",
                f"{VERSIONS}{a.target[0].pk}/upgrade-devices/",
                {"devices": [str(a.target[1].pk)]},
            ),
            state=lambda a: list(Device.objects.values_list("pk", "profile_version_id")),
            expect=expect,
        ),
    )


# --- sharing down the tree ---------------------------------------------------------------------


def test_a_customer_sees_its_manufacturers_profile_but_cannot_edit_it(tree):
    profile = make_profile(tree["acme"], "Door Sensor")
    customer = client_for(make_member(tree["retail"], Role.OWNER))
    listed = customer.get(URL)
    assert [row["id"] for row in listed.json()["results"]] == [str(profile.pk)]
    assert customer.get(f"{URL}{profile.pk}/").json() == profile_json(profile)
    assert customer.get(f"{URL}{profile.pk}/versions/").status_code == 200
    before = AuditLog.objects.count()
    refused = customer.patch(f"{URL}{profile.pk}/", {"name": "Mine"}, format="json")
    assert (refused.status_code, error(refused)["status"]) == (403, 403)
    assert (DeviceProfile.objects.get().name, AuditLog.objects.count()) == ("Door Sensor", before)


def test_a_sibling_manufacturer_does_not_see_the_profile(tree):
    profile = make_profile(tree["acme"], "Door Sensor")
    sibling = client_for(make_member(tree["globex"], Role.OWNER))
    assert sibling.get(URL).json()["results"] == []
    assert sibling.get(f"{URL}{profile.pk}/").status_code == 404
    patched = sibling.patch(f"{URL}{profile.pk}/", {"name": "Mine"}, format="json")
    assert patched.status_code == 404
    assert sibling.get(f"{VERSIONS}{version_of(profile).pk}/").status_code == 404


def test_a_customer_upgrades_only_its_own_devices_to_a_shared_version(tree):
    profile = make_profile(tree["acme"])
    v1 = version_of(profile)
    own = make_device(v1, tree["retail"])
    foreign = make_device(v1, tree["hospital"])
    v2 = services.profile_update(actor=SYSTEM, profile=profile, heartbeat_missed_beats=4)
    customer = client_for(make_member(tree["retail"], Role.OPERATOR))
    response = customer.post(
        f"{VERSIONS}{v2.pk}/upgrade-devices/", {"filter": {"state": ["escrow"]}}, format="json"
    )
    assert response.json() == {"upgraded": 1}
    states = dict(Device.objects.values_list("pk", "profile_version_id"))
    assert (states[own.pk], states[foreign.pk]) == (v2.pk, v1.pk)


# --- bad input ---------------------------------------------------------------------------------


def test_create_reports_field_errors_and_writes_nothing(tree):
    owner = client_for(make_member(tree["acme"], Role.OWNER))
    response = owner.post(
        URL,
        {
            "organization": str(tree["acme"].pk),
            "name": "X",
            "telemetry_schema": {"metrics": [{"name": "t", "convert": {"from": "°F", "to": "V"}}]},
            "attributes_schema": [],
        },
        format="json",
    )
    assert response.status_code == 400
    assert error(response)["fields"] == {
        "attributes_schema": ["Must be a JSON Schema object."],
        "telemetry_schema": ["metrics[0] (t): cannot convert °F to V."],
    }
    assert DeviceProfile.objects.count() == 0


def test_upgrade_needs_exactly_one_of_devices_or_filter(tree):
    version = version_of(make_profile(tree["acme"]))
    owner = client_for(make_member(tree["acme"], Role.OWNER))
    url = f"{VERSIONS}{version.pk}/upgrade-devices/"
    both = owner.post(url, {"devices": [], "filter": {}}, format="json")
    assert error(both)["fields"] == {
        "non_field_errors": ["Give either devices or filter, not both."]
    }
    bad = owner.post(url, {"filter": {"colour": ["red"]}}, format="json")
    assert (bad.status_code, error(bad)["fields"]) == (400, {"filter": ["Unknown filter."]})


# --- query budgets -----------------------------------------------------------------------------


def _queries(client: APIClient, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


def test_list_and_detail_cost_the_same_for_3_or_30_profiles(tree):
    owner = client_for(make_member(tree["acme"], Role.OWNER))
    for index in range(3):
        make_profile(tree["acme"], f"P{index}")
    first = DeviceProfile.objects.first()
    small = (_queries(owner, URL), _queries(owner, f"{URL}{first.pk}/"))
    for index in range(3, 30):
        make_profile(tree["retail"], f"P{index}")
    assert len(owner.get(URL).json()["results"]) == 30
    assert small == (_queries(owner, URL), _queries(owner, f"{URL}{first.pk}/")) == (5, 5)


# --- schema ------------------------------------------------------------------------------------


def test_the_profiles_schema_validates_without_warnings():
    GENERATOR_STATS.reset()
    generator = SchemaGenerator(patterns=[path("api/v1/", include("apps.profiles.api.urls"))])
    schema = generator.get_schema(request=None, public=True)
    validate_openapi(schema)
    assert not GENERATOR_STATS, dict(GENERATOR_STATS._warn_cache)
    assert sorted(schema["paths"]) == [
        "/api/v1/profile-versions/{id}/",
        "/api/v1/profile-versions/{id}/upgrade-devices/",
        "/api/v1/profiles/",
        "/api/v1/profiles/{id}/",
        "/api/v1/profiles/{id}/versions/",
    ]
