"""Portal pages of enrollment policies, claim tokens and provisioning templates: anonymous ->
login, sibling -> 404, role without the permission -> 403, allowed -> the exact state."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog
from apps.devices.models import ClaimToken, EnrollmentPolicy
from apps.profiles import provisioning
from apps.profiles.models import ProvisioningTemplate
from tests.portal.conftest import verified_member

from .support import claim_policy, claim_token, make_profile

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(tree):
    acme = tree["acme"]
    return {
        "owner": verified_member(acme, Role.OWNER, "owner@acme.test"),
        "viewer": verified_member(acme, Role.VIEWER, "viewer@acme.test"),
        "billing": verified_member(acme, Role.BILLING, "billing@acme.test"),
        "stranger": verified_member(tree["globex"], Role.OWNER, "owner@globex.test"),
    }


@pytest.fixture
def world(tree):
    profile = make_profile(tree["acme"])
    policy = claim_policy(tree["acme"], profile, name="Batch 7", target_organization=tree["retail"])
    claim_token(policy, max_uses=5)
    template = provisioning.template_create(
        actor=SYSTEM,
        organization=tree["retail"],
        name="Retail screens",
        profile=profile,
        configuration={"brightness": 70},
    )
    return {"profile": profile, "policy": policy, "template": template}


def url(name: str, **kwargs) -> str:
    return reverse(name, kwargs=kwargs)


def rows(response, attribute: str) -> list[str]:
    return re.findall(rf'data-{attribute}="([^"]+)"', response.content.decode())


def test_anonymous_visitors_are_sent_to_the_login_page(client, tree, world):
    for target in (
        url("enrollment:list", organization_id=tree["acme"].pk),
        url("enrollment:detail", policy_id=world["policy"].pk),
        url("profiles:provisioning", organization_id=tree["acme"].pk),
    ):
        response = client.get(target)
        assert (response.status_code, response.url) == (302, f"/accounts/login/?next={target}")


def test_a_sibling_sees_nothing(client, tree, people, world):
    client.force_login(people["stranger"])
    policy, template = world["policy"], world["template"]
    assert client.get(url("enrollment:list", organization_id=tree["acme"].pk)).status_code == 404
    assert client.get(url("enrollment:detail", policy_id=policy.pk)).status_code == 404
    assert client.post(url("enrollment:toggle", policy_id=policy.pk)).status_code == 404
    token = ClaimToken.objects.get()
    assert client.post(url("enrollment:token-revoke", token_id=token.pk)).status_code == 404
    assert client.get(url("profiles:provisioning-edit", template_id=template.pk)).status_code == 404
    assert (
        client.post(url("profiles:provisioning-delete", template_id=template.pk)).status_code == 404
    )
    assert (EnrollmentPolicy.objects.get().enabled, ClaimToken.objects.get().revoked_at) == (
        True,
        None,
    )
    assert ProvisioningTemplate.objects.count() == 1


def test_roles_without_the_permission_get_403(client, tree, people, world):
    policy = world["policy"]
    client.force_login(people["billing"])
    assert client.get(url("enrollment:list", organization_id=tree["acme"].pk)).status_code == 403
    assert (
        client.get(url("profiles:provisioning", organization_id=tree["acme"].pk)).status_code == 403
    )
    client.force_login(people["viewer"])
    assert client.get(url("enrollment:create", organization_id=tree["acme"].pk)).status_code == 403
    assert client.get(url("enrollment:edit", policy_id=policy.pk)).status_code == 403
    assert client.post(url("enrollment:toggle", policy_id=policy.pk)).status_code == 403
    response = client.post(
        url("enrollment:token-create", policy_id=policy.pk), {"valid_days": 1, "max_uses": 1}
    )
    assert response.status_code == 403
    token = ClaimToken.objects.get()
    assert client.post(url("enrollment:token-revoke", token_id=token.pk)).status_code == 403
    assert (
        client.get(url("profiles:provisioning-create", organization_id=tree["acme"].pk)).status_code
        == 403
    )
    assert (
        client.post(
            url("profiles:provisioning-delete", template_id=world["template"].pk)
        ).status_code
        == 403
    )
    assert (ClaimToken.objects.count(), ProvisioningTemplate.objects.count()) == (1, 1)


def test_a_viewer_reads_the_policies_and_their_tokens(client, tree, people, world):
    client.force_login(people["viewer"])
    listing = client.get(url("enrollment:list", organization_id=tree["acme"].pk))
    assert listing.status_code == 200
    assert rows(listing, "policy") == ["Batch 7"]
    assert 'id="new-policy"' not in listing.content.decode()
    assert 'href="/o/{}/enrollment/"'.format(tree["acme"].pk) in listing.content.decode()
    detail = client.get(url("enrollment:detail", policy_id=world["policy"].pk))
    assert rows(detail, "prefix") == [ClaimToken.objects.get().prefix]
    assert 'id="claim-token-form"' not in detail.content.decode()
    assert 'id="policy-toggle"' not in detail.content.decode()


def test_an_owner_creates_a_policy_and_a_claim_token_shown_once(client, tree, people, world):
    client.force_login(people["owner"])
    response = client.post(
        url("enrollment:create", organization_id=tree["acme"].pk),
        {
            "name": "Hospital line",
            "method": "claim_token",
            "profile": str(world["profile"].pk),
            "target_organization": str(tree["hospital"].pk),
            "first_contact": "quarantine",
            "escrow_action": "keep_escrow",
            "enabled": "on",
        },
    )
    policy = EnrollmentPolicy.objects.get(name="Hospital line")
    assert (response.status_code, response.url) == (
        302,
        url("enrollment:detail", policy_id=policy.pk),
    )
    assert (
        policy.target_organization,
        policy.first_contact,
        policy.escrow_action,
        policy.enabled,
        policy.allow_token_credentials,
    ) == (tree["hospital"], "quarantine", "keep_escrow", True, False)
    created = client.post(
        url("enrollment:token-create", policy_id=policy.pk),
        {"label": "Run 3", "valid_days": 10, "max_uses": 25},
    )
    row = ClaimToken.objects.get(policy=policy)
    assert created.url == url("enrollment:token-created", token_id=row.pk)
    page = client.get(created.url)
    token = re.search(r'id="claim-token">([^<]+)<', page.content.decode()).group(1)
    assert token.startswith(f"fo_claim_{row.prefix}_")
    assert (row.label, row.max_uses, page["Cache-Control"]) == ("Run 3", 25, "no-store")
    again = client.get(created.url)
    assert 'id="claim-token-gone"' in again.content.decode()
    assert token not in again.content.decode()
    revoked = client.post(url("enrollment:token-revoke", token_id=row.pk))
    assert revoked.url == url("enrollment:detail", policy_id=policy.pk)
    row.refresh_from_db()
    assert row.revoked_at is not None


def test_a_bad_policy_form_names_the_field(client, tree, people, world):
    client.force_login(people["owner"])
    response = client.post(
        url("enrollment:create", organization_id=tree["acme"].pk),
        {
            "name": "Line",
            "method": "factory_certificate",
            "target_organization": str(tree["acme"].pk),
            "first_contact": "activate",
            "escrow_action": "activate",
        },
    )
    assert response.status_code == 400
    assert (
        "A factory-certificate policy needs at least one registered CA."
        in response.content.decode()
    )
    assert not EnrollmentPolicy.objects.filter(name="Line").exists()


def test_an_owner_edits_and_disables_a_policy(client, tree, people, world):
    policy = world["policy"]
    client.force_login(people["owner"])
    form = client.get(url("enrollment:edit", policy_id=policy.pk))
    assert form.status_code == 200
    response = client.post(
        url("enrollment:edit", policy_id=policy.pk),
        {
            "name": "Batch 7b",
            "method": "claim_token",
            "profile": str(world["profile"].pk),
            "target_organization": str(tree["store"].pk),
            "first_contact": "activate",
            "escrow_action": "activate",
            "allow_token_credentials": "on",
            "enabled": "on",
        },
    )
    assert response.status_code == 302
    toggled = client.post(url("enrollment:toggle", policy_id=policy.pk))
    assert toggled.status_code == 302
    policy.refresh_from_db()
    assert (
        policy.name,
        policy.target_organization,
        policy.allow_token_credentials,
        policy.enabled,
    ) == (
        "Batch 7b",
        tree["store"],
        True,
        False,
    )
    changes = [
        row.changes
        for row in AuditLog.objects.filter(action="enrollmentpolicy.update").order_by(
            "created_at", "id"
        )
    ]
    assert changes == [
        {
            "name": ["Batch 7", "Batch 7b"],
            "target_organization": [str(tree["retail"].pk), str(tree["store"].pk)],
            "allow_token_credentials": [False, True],
        },
        {"enabled": [True, False]},
    ]


def test_provisioning_templates_are_listed_previewed_and_edited(client, tree, people, world):
    client.force_login(people["owner"])
    profile = world["profile"]
    created = client.post(
        url("profiles:provisioning-create", organization_id=tree["acme"].pk),
        {
            "name": "Sensor defaults",
            "profile": str(profile.pk),
            "configuration": '{"brightness": 50, "mode": "kiosk"}',
            "heartbeat_interval_seconds": "30",
            "routing_labels": "eu, sensors",
            "software": '{"firmware": "1.0.0"}',
            "enabled": "on",
        },
    )
    assert created.status_code == 302
    template = ProvisioningTemplate.objects.get(name="Sensor defaults")
    assert (
        template.configuration,
        template.routing_labels,
        template.heartbeat_interval_seconds,
    ) == (
        {"brightness": 50, "mode": "kiosk"},
        ["eu", "sensors"],
        30,
    )
    listing = client.get(url("profiles:provisioning", organization_id=tree["acme"].pk))
    assert rows(listing, "template") == ["Sensor defaults", "Retail screens"]
    preview = client.get(
        url("profiles:provisioning", organization_id=tree["retail"].pk),
        {"profile": str(profile.pk)},
    )
    text = preview.content.decode()
    assert "Sensor defaults → Retail screens" in text
    assert "&quot;brightness&quot;: 70" in text and "&quot;mode&quot;: &quot;kiosk&quot;" in text
    bad = client.post(
        url("profiles:provisioning-edit", template_id=template.pk),
        {"name": "Sensor defaults", "configuration": "{nope", "software": "{}"},
    )
    assert bad.status_code == 400
    assert "Not valid JSON" in bad.content.decode()
    deleted = client.post(url("profiles:provisioning-delete", template_id=template.pk))
    assert deleted.url == url("profiles:provisioning", organization_id=tree["acme"].pk)
    assert not ProvisioningTemplate.objects.filter(pk=template.pk).exists()


def test_the_navigation_offers_enrollment_and_provisioning(client, tree, people, world):
    client.force_login(people["viewer"])
    page = client.get(url("enrollment:list", organization_id=tree["acme"].pk)).content.decode()
    assert f'href="/o/{tree["acme"].pk}/provisioning/"' in page
    client.force_login(people["billing"])
    page = client.get(reverse("portal:home"), follow=True).content.decode()
    assert "/enrollment/" not in page and "/provisioning/" not in page
