"""Zero-touch enrollment seen from the portal, in Debian's Chromium against a real daphne: a
device enrolls over HTTP with only a claim token and appears on the open fleet page without a
reload; the policy page shows the token's use.

Screenshots land in test-artifacts/screenshots/enrollment-*.png.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.devices import services
from apps.devices.models import Device
from apps.profiles.models import ProfileVersion
from tests.portal.conftest import verified_member
from tests.portal.test_browser import SCREENSHOTS, sign_in
from tests.portal.test_fleet_browser import in_thread, page, served  # noqa: F401

from .support import body, claim_policy, claim_token, make_profile, new_key

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def shot(page, step: str) -> None:  # noqa: F811 - the page fixture's value
    path = SCREENSHOTS / f"enrollment-{step}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 0


def post_json(url: str, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=json.dumps(data).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.status, json.loads(response.read())


def test_an_enrolled_device_appears_live_on_the_fleet_page(tree, served, page):  # noqa: F811
    verified_member(tree["acme"], Role.OWNER, "owner@acme.test")
    profile = make_profile(tree["acme"])
    policy = claim_policy(tree["acme"], profile, name="Line 4", target_organization=tree["retail"])
    token = claim_token(policy, max_uses=10)
    services.device_register(
        actor=SYSTEM,
        organization=tree["retail"],
        profile_version=ProfileVersion.objects.get(profile=profile),
        serial="SN-OLD",
    )
    sign_in(page, "owner@acme.test")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    page.goto(f"/o/{tree['acme'].pk}/devices/")
    page.wait_for_selector("body[data-live=open]")
    serials = "#fleet tbody tr td[data-label=Serial]"
    assert page.locator(serials).all_inner_texts() == ["SN-OLD"]
    shot(page, "1-fleet-before")

    status, answer = in_thread(
        post_json, f"{served}/device/v1/enroll", body("SN-LIVE", token=token, key=new_key())
    )
    device = Device.objects.get(serial="SN-LIVE")
    assert (status, answer["device_id"], answer["state"]) == (201, str(device.pk), "active")
    page.wait_for_selector(f'#fleet tr[data-device-id="{device.pk}"]')
    assert page.locator(serials).all_inner_texts() == ["SN-LIVE", "SN-OLD"]
    assert page.locator("body").get_attribute("data-rows-refreshed") == "true"
    badge = page.locator(f'#fleet tr[data-device-id="{device.pk}"] [data-state]')
    assert badge.inner_text() == "Active"
    shot(page, "2-fleet-after")

    page.goto(f"/enrollment/{policy.pk}/")
    assert page.locator("#policy-name").inner_text() == "Line 4"
    assert page.locator("#claim-tokens td[data-label=Uses]").inner_text() == "1 of 10"
    shot(page, "3-policy")
