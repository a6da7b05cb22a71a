from __future__ import annotations

import pytest
from django.core.management import call_command

from apps.devices.choices import DeviceState, TransferStatus
from apps.devices.models import Device, DeviceGroup, Transfer
from apps.profiles.models import DeviceProfile

pytestmark = [pytest.mark.slow, pytest.mark.django_db]


def test_the_fleet_demo_loads_a_fleet_with_its_story_once(capsys):
    call_command("load_demo", force=True)
    call_command("load_fleet_demo")
    devices = Device.objects.all()
    assert devices.count() == 3100
    by_org = {}
    for slug in devices.values_list("organization__slug", flat=True):
        by_org[slug] = by_org.get(slug, 0) + 1
    assert by_org == {"acme-robotics": 1499, "northwind-hospitals": 601, "globex-signage": 1000}
    assert DeviceProfile.objects.count() == 3
    assert devices.filter(state=DeviceState.MAINTENANCE).count() == 6
    assert devices.filter(state=DeviceState.SUSPENDED).count() == 2
    assert devices.filter(state=DeviceState.REPLACED).count() == 1
    replaced = devices.get(state=DeviceState.REPLACED)
    assert replaced.replaced_by is not None
    assert set(DeviceGroup.objects.values_list("name", "kind")) == {
        ("Pilot fleet", "static"),
        ("EU couriers", "dynamic"),
        ("Beta screens", "dynamic"),
    }
    assert DeviceGroup.objects.get(name="Pilot fleet").devices.count() == 20
    assert Transfer.objects.filter(status=TransferStatus.PENDING).count() == 1
    assert Transfer.objects.filter(status=TransferStatus.ACCEPTED).count() == 1

    call_command("load_fleet_demo")
    assert Device.objects.count() == 3100
    assert "Fleet demo already loaded; nothing to do." in capsys.readouterr().out


def test_the_connectivity_demo_sets_up_zero_touch_once(tmp_path, capsys):
    from apps.accounts import tokens
    from apps.devices.models import ClaimToken, EnrollmentPolicy
    from apps.profiles.models import ProvisioningTemplate

    call_command("load_demo", force=True)
    call_command("load_fleet_demo", scale=1)
    token_file = tmp_path / "claim-token"
    call_command("load_connectivity_demo", token_file=token_file)
    policy = EnrollmentPolicy.objects.get()
    assert (policy.organization.slug, policy.target_organization.slug) == (
        "acme-robotics",
        "northwind-hospitals",
    )
    assert (policy.method, policy.first_contact, policy.profile.slug) == (
        "claim_token",
        "activate",
        "courier-robot",
    )
    from apps.devices.models import CertificateAuthority

    assert (
        CertificateAuthority.objects.filter(
            organization=policy.target_organization, kind="intermediate"
        ).count()
        == 1
    )
    template = ProvisioningTemplate.objects.get()
    assert (template.profile.slug, template.heartbeat_interval_seconds) == ("courier-robot", 30)
    token = token_file.read_text().strip()
    assert token_file.stat().st_mode & 0o777 == 0o600
    claim = ClaimToken.objects.get()
    assert claim.prefix == tokens.parse_prefix(token, "claim")
    assert claim.token_hash == tokens.hash_token(token)

    call_command("load_connectivity_demo", token_file=token_file)
    assert ClaimToken.objects.count() == 1
    assert token_file.read_text().strip() == token
    assert "Claim token kept in" in capsys.readouterr().out
