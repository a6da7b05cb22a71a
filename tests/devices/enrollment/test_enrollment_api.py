"""/api/v1/enrollment-policies/, /api/v1/claim-tokens/ and /api/v1/provisioning-templates/:
the authorization matrix on every endpoint, exact resulting state, and the services' rules."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.devices import enrollment_policies
from apps.devices.models import ClaimToken, EnrollmentPolicy
from apps.profiles import provisioning
from apps.profiles.models import ProvisioningTemplate
from tests.authz import Call, Case, assert_authz_matrix, authz_world, error, iso, last_audit

from .support import FactoryCA, claim_policy, claim_token, make_profile

__all__ = ["authz_world"]

pytestmark = pytest.mark.django_db

POLICIES = "/api/v1/enrollment-policies/"
TOKENS = "/api/v1/claim-tokens/"
TEMPLATES = "/api/v1/provisioning-templates/"
VIEWERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.APPROVER, Role.TECHNICIAN, Role.VIEWER}
EDITORS = {Role.OWNER, Role.ADMIN}


def policy_json(policy: EnrollmentPolicy) -> dict[str, Any]:
    policy.refresh_from_db()
    return {
        "id": str(policy.pk),
        "organization": str(policy.organization_id),
        "name": policy.name,
        "profile": str(policy.profile_id) if policy.profile_id else None,
        "method": policy.method,
        "first_contact": policy.first_contact,
        "escrow_action": policy.escrow_action,
        "target_organization": str(policy.target_organization_id),
        "authorities": sorted(str(pk) for pk in policy.authorities.values_list("pk", flat=True)),
        "allow_token_credentials": policy.allow_token_credentials,
        "enabled": policy.enabled,
        "created_at": iso(policy.created_at),
        "updated_at": iso(policy.updated_at),
    }


def token_json(row: ClaimToken) -> dict[str, Any]:
    row.refresh_from_db()
    return {
        "id": str(row.pk),
        "policy": str(row.policy_id),
        "prefix": row.prefix,
        "label": row.label,
        "expires_at": iso(row.expires_at),
        "max_uses": row.max_uses,
        "uses": row.uses,
        "revoked_at": iso(row.revoked_at),
        "created_at": iso(row.created_at),
    }


def template_json(template: ProvisioningTemplate) -> dict[str, Any]:
    template.refresh_from_db()
    return {
        "id": str(template.pk),
        "organization": str(template.organization_id),
        "name": template.name,
        "profile": str(template.profile_id) if template.profile_id else None,
        "configuration": template.configuration,
        "heartbeat_interval_seconds": template.heartbeat_interval_seconds,
        "heartbeat_missed_beats": template.heartbeat_missed_beats,
        "routing_labels": template.routing_labels,
        "software": template.software,
        "enabled": template.enabled,
        "created_at": iso(template.created_at),
        "updated_at": iso(template.updated_at),
    }


def retail_policy(world) -> EnrollmentPolicy:
    profile = make_profile(world.tree["acme"])
    return claim_policy(world.tree["retail"], profile, name="Retail batch")


def retail_token(world) -> ClaimToken:
    claim_token(retail_policy(world), max_uses=5)
    return ClaimToken.objects.get()


def policies_state(attempt) -> list[tuple[Any, ...]]:
    return list(EnrollmentPolicy.objects.order_by("id").values_list("id", "name", "enabled"))


def tokens_state(attempt) -> list[tuple[Any, ...]]:
    return list(ClaimToken.objects.order_by("id").values_list("id", "revoked_at"))


def templates_state(attempt) -> list[tuple[Any, ...]]:
    return list(
        ProvisioningTemplate.objects.order_by("id").values_list("id", "name", "configuration")
    )


# --- enrollment policies -----------------------------------------------------------------------


def test_policy_list_matrix(authz_world):
    def expect(attempt, response):
        assert response.json()["results"] == [policy_json(attempt.target)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="enrollmentpolicy.view",
            allowed=VIEWERS,
            setup=retail_policy,
            request=lambda a: Call(
                "get", POLICIES, {"organization": str(a.target.organization_id)}
            ),
            expect=expect,
            listing=True,
        ),
    )


def test_policy_retrieve_matrix(authz_world):
    assert_authz_matrix(
        authz_world,
        Case(
            permission="enrollmentpolicy.view",
            allowed=VIEWERS,
            setup=retail_policy,
            request=lambda a: Call("get", f"{POLICIES}{a.target.pk}/"),
            expect=lambda a, response: response.json() == policy_json(a.target) or None,
        ),
    )


def test_policy_create_matrix(authz_world):
    tree = authz_world.tree

    def setup(world):
        return make_profile(world.tree["acme"])

    def expect(attempt, response):
        policy = EnrollmentPolicy.objects.get(name="Store rollout")
        assert response.json() == policy_json(policy)
        assert (
            policy.organization,
            policy.target_organization,
            policy.profile,
            policy.method,
            policy.first_contact,
            policy.allow_token_credentials,
        ) == (tree["retail"], tree["store"], attempt.target, "claim_token", "quarantine", True)
        audit = last_audit("enrollmentpolicy.create")
        assert (audit.object_id, audit.actor_label, audit.changes["target_organization"]) == (
            str(policy.pk),
            attempt.principal.label,
            [None, str(tree["store"].pk)],
        )

    assert_authz_matrix(
        authz_world,
        Case(
            permission="enrollmentpolicy.add",
            allowed=EDITORS,
            setup=setup,
            request=lambda a: Call(
                "post",
                POLICIES,
                {
                    "organization": str(tree["retail"].pk),
                    "name": "Store rollout",
                    "method": "claim_token",
                    "profile": str(a.target.pk),
                    "target_organization": str(tree["store"].pk),
                    "first_contact": "quarantine",
                    "allow_token_credentials": True,
                },
            ),
            status=201,
            state=policies_state,
            expect=expect,
        ),
    )


def test_policy_disable_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == policy_json(attempt.target)
        assert attempt.target.enabled is False
        assert last_audit("enrollmentpolicy.update").changes == {"enabled": [True, False]}

    assert_authz_matrix(
        authz_world,
        Case(
            permission="enrollmentpolicy.change",
            allowed=EDITORS,
            setup=retail_policy,
            request=lambda a: Call("patch", f"{POLICIES}{a.target.pk}/", {"enabled": False}),
            state=policies_state,
            expect=expect,
        ),
    )


def test_policies_cannot_be_deleted(tree):
    from tests.authz import make_principal

    owner = make_principal("session", tree["acme"], Role.OWNER)
    policy = claim_policy(tree["acme"], make_profile(tree["acme"]))
    assert owner.client.delete(f"{POLICIES}{policy.pk}/").status_code == 405


def test_policy_rules_are_field_errors(tree):
    from tests.authz import make_principal

    owner = make_principal("api_key", tree["retail"], Role.OWNER)
    profile = make_profile(tree["acme"])
    outside = owner.client.post(
        POLICIES,
        {
            "organization": str(tree["retail"].pk),
            "name": "Up the tree",
            "method": "claim_token",
            "target_organization": str(tree["retail"].pk),
            "profile": str(make_profile(tree["globex"], "other").pk),
        },
        format="json",
    )
    assert outside.status_code == 404  # a profile the caller cannot see
    above = owner.client.post(
        POLICIES,
        {
            "organization": str(tree["store"].pk),
            "name": "Up the tree",
            "method": "claim_token",
            "target_organization": str(tree["retail"].pk),
            "profile": str(profile.pk),
        },
        format="json",
    )
    assert error(above)["fields"] == {
        "target_organization": ["Must be the policy's organization or one below it."]
    }
    factory = owner.client.post(
        POLICIES,
        {"organization": str(tree["retail"].pk), "name": "Line", "method": "factory_certificate"},
        format="json",
    )
    assert error(factory)["fields"] == {
        "authorities": ["A factory-certificate policy needs at least one registered CA."]
    }
    elsewhere = FactoryCA(tree["globex"]).authority
    foreign = owner.client.post(
        POLICIES,
        {
            "organization": str(tree["retail"].pk),
            "name": "Line",
            "method": "factory_certificate",
            "authorities": [str(elsewhere.pk)],
        },
        format="json",
    )
    assert error(foreign)["fields"] == {
        "authorities": [f"Unknown or unverified certificate authority {elsewhere.pk}."]
    }
    manufacturer_ca = FactoryCA(tree["acme"]).authority  # above Retail: usable by it
    created = owner.client.post(
        POLICIES,
        {
            "organization": str(tree["retail"].pk),
            "name": "Line",
            "method": "factory_certificate",
            "authorities": [str(manufacturer_ca.pk)],
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["authorities"] == [str(manufacturer_ca.pk)]
    duplicate = owner.client.post(
        POLICIES,
        {"organization": str(tree["retail"].pk), "name": "Line", "method": "claim_token"},
        format="json",
    )
    assert error(duplicate)["fields"] == {
        "name": ["This organization already has an enrollment policy with this name."]
    }


# --- claim tokens ------------------------------------------------------------------------------


def test_claim_token_list_matrix(authz_world):
    def expect(attempt, response):
        assert response.json()["results"] == [token_json(attempt.target)]

    assert_authz_matrix(
        authz_world,
        Case(
            permission="enrollmentpolicy.view",
            allowed=VIEWERS,
            setup=retail_token,
            request=lambda a: Call("get", TOKENS, {"policy": str(a.target.policy_id)}),
            expect=expect,
            listing=True,
        ),
    )


def test_claim_token_create_matrix(authz_world):
    expires = timezone.now() + dt.timedelta(days=30)

    def expect(attempt, response):
        row = ClaimToken.objects.get(policy=attempt.target)
        data = response.json()
        token = data.pop("token")
        assert data == token_json(row)
        assert token.startswith(f"fo_claim_{row.prefix}_")
        assert (row.max_uses, row.uses, row.label, row.expires_at) == (500, 0, "Run 12", expires)
        audit = last_audit("claimtoken.create")
        assert audit.organization_id == attempt.target.organization_id
        assert token not in str(audit.changes)
        assert row.created_by_id == (attempt.principal.user.pk if attempt.principal.user else None)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="enrollmentpolicy.add",
            allowed=EDITORS,
            setup=retail_policy,
            request=lambda a: Call(
                "post",
                TOKENS,
                {
                    "policy": str(a.target.pk),
                    "expires_at": expires.isoformat(),
                    "max_uses": 500,
                    "label": "Run 12",
                },
            ),
            status=201,
            state=tokens_state,
            expect=expect,
        ),
    )


def test_claim_token_revoke_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == token_json(attempt.target)
        assert attempt.target.revoked_at is not None
        assert last_audit("claimtoken.revoke").object_id == str(attempt.target.pk)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="enrollmentpolicy.delete",
            allowed=EDITORS,
            setup=retail_token,
            request=lambda a: Call("post", f"{TOKENS}{a.target.pk}/revoke/"),
            state=tokens_state,
            expect=expect,
        ),
    )


def test_claim_token_rules(tree):
    from tests.authz import make_principal

    owner = make_principal("session", tree["acme"], Role.OWNER)
    policy = claim_policy(tree["acme"], make_profile(tree["acme"]))
    past = owner.client.post(
        TOKENS,
        {"policy": str(policy.pk), "expires_at": timezone.now().isoformat(), "max_uses": 1},
        format="json",
    )
    assert error(past)["fields"] == {"expires_at": ["Must be in the future."]}
    zero = owner.client.post(
        TOKENS,
        {"policy": str(policy.pk), "expires_at": "2099-01-01T00:00:00Z", "max_uses": 0},
        format="json",
    )
    assert list(error(zero)["fields"]) == ["max_uses"]


# --- provisioning templates --------------------------------------------------------------------


def retail_template(world) -> ProvisioningTemplate:
    profile = make_profile(world.tree["acme"])
    return provisioning.template_create(
        actor=SYSTEM,
        organization=world.tree["retail"],
        name="Retail screens",
        profile=profile,
        configuration={"brightness": 70},
        routing_labels=["retail"],
    )


def test_template_list_matrix(authz_world):
    assert_authz_matrix(
        authz_world,
        Case(
            permission="provisioningtemplate.view",
            allowed=VIEWERS,
            setup=retail_template,
            request=lambda a: Call(
                "get", TEMPLATES, {"organization": str(a.target.organization_id)}
            ),
            expect=lambda a, r: r.json()["results"] == [template_json(a.target)] or None,
            listing=True,
        ),
    )


def test_template_create_matrix(authz_world):
    tree = authz_world.tree

    def expect(attempt, response):
        template = ProvisioningTemplate.objects.get(name="Hospital defaults")
        assert response.json() == template_json(template)
        assert (
            template.organization,
            template.profile,
            template.configuration,
            template.heartbeat_interval_seconds,
            template.software,
        ) == (tree["hospital"], None, {"mode": "clinic"}, 120, {"firmware": "2.0.1"})
        assert last_audit("provisioningtemplate.create").object_id == str(template.pk)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="provisioningtemplate.add",
            allowed=EDITORS,
            request=lambda a: Call(
                "post",
                TEMPLATES,
                {
                    "organization": str(tree["hospital"].pk),
                    "name": "Hospital defaults",
                    "configuration": {"mode": "clinic"},
                    "heartbeat_interval_seconds": 120,
                    "software": {"firmware": "2.0.1"},
                },
            ),
            status=201,
            state=templates_state,
            expect=expect,
        ),
    )


def test_template_update_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == template_json(attempt.target)
        assert attempt.target.configuration == {"brightness": 40}
        assert last_audit("provisioningtemplate.update").changes == {
            "configuration": [{"brightness": 70}, {"brightness": 40}]
        }

    assert_authz_matrix(
        authz_world,
        Case(
            permission="provisioningtemplate.change",
            allowed=EDITORS,
            setup=retail_template,
            request=lambda a: Call(
                "patch", f"{TEMPLATES}{a.target.pk}/", {"configuration": {"brightness": 40}}
            ),
            state=templates_state,
            expect=expect,
        ),
    )


def test_template_delete_matrix(authz_world):
    def expect(attempt, response):
        assert not ProvisioningTemplate.objects.filter(pk=attempt.target.pk).exists()
        assert last_audit("provisioningtemplate.delete").object_id == str(attempt.target.pk)

    assert_authz_matrix(
        authz_world,
        Case(
            permission="provisioningtemplate.delete",
            allowed=EDITORS,
            setup=retail_template,
            request=lambda a: Call("delete", f"{TEMPLATES}{a.target.pk}/"),
            status=204,
            state=templates_state,
            expect=expect,
        ),
    )


def test_template_preview_matrix(authz_world):
    tree = authz_world.tree

    def expect(attempt, response):
        profile = attempt.target.profile
        version = profile.versions.get()
        assert response.json() == {
            "profile_version": str(version.pk),
            "templates": [{"id": str(attempt.target.pk), "name": "Retail screens"}],
            "configuration": {"brightness": 70},
            "heartbeat": {"interval_seconds": 60, "missed_beats": 3},
            "routing_labels": ["retail"],
            "software": {},
        }

    assert_authz_matrix(
        authz_world,
        Case(
            permission="provisioningtemplate.view",
            allowed=VIEWERS,
            setup=retail_template,
            request=lambda a: Call(
                "get",
                f"{TEMPLATES}preview/",
                {"organization": str(tree["store"].pk), "profile": str(a.target.profile_id)},
            ),
            expect=expect,
        ),
    )


def test_template_rules(tree):
    from tests.authz import make_principal

    admin = make_principal("api_key", tree["acme"], Role.ADMIN)
    profile = make_profile(tree["acme"])
    bad = admin.client.post(
        TEMPLATES,
        {
            "organization": str(tree["retail"].pk),
            "name": "Defaults",
            "configuration": [1],
            "software": {"firmware": 2},
            "heartbeat_interval_seconds": 0,
        },
        format="json",
    )
    assert error(bad)["fields"] == {
        "configuration": ["Must be an object."],
        "software": ['Must map each component to a version string, e.g. {"firmware": "1.4.2"}.'],
        "heartbeat_interval_seconds": ["Must be empty or a whole number from 1 to 604800."],
    }
    first = {"organization": str(tree["retail"].pk), "name": "A", "profile": str(profile.pk)}
    assert admin.client.post(TEMPLATES, first, format="json").status_code == 201
    second = admin.client.post(TEMPLATES, first | {"name": "B"}, format="json")
    assert error(second)["fields"] == {
        "profile": ["This organization already has an enabled template for this profile."]
    }
    sibling_profile = make_profile(tree["globex"], "gx")
    other = admin.client.post(
        TEMPLATES, first | {"name": "C", "profile": str(sibling_profile.pk)}, format="json"
    )
    assert other.status_code == 404  # a profile the caller cannot see


def test_the_policy_list_costs_the_same_for_one_or_five_policies(tree):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.authz import make_principal

    viewer = make_principal("api_key", tree["acme"], Role.VIEWER)
    ca = FactoryCA(tree["acme"]).authority

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert viewer.client.get(POLICIES).status_code == 200
        return len(captured)

    claim_policy(tree["acme"], make_profile(tree["acme"]))
    queries()  # the key's last use is recorded once a minute: not in what is measured
    one = queries()
    for index in range(4):
        enrollment_policies.policy_create(
            actor=SYSTEM,
            organization=tree["retail"],
            name=f"Line {index}",
            method="factory_certificate",
            authorities=[ca],
        )
    assert len(viewer.client.get(POLICIES).json()["results"]) == 5
    assert queries() == one == 4  # the key, its subtree, the page, the CAs of the page
