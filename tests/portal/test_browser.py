"""The portal in a real browser: Debian's Chromium driven by Playwright against live_server.

Screenshots of every step land in test-artifacts/screenshots/<test>-<step>.png.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

from apps.accounts.models import Membership, Organization, User
from apps.accounts.roles import Role
from apps.core.models import AuditLog

from .conftest import verified_member

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
PASSWORD = "correct horse battery"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser(monkeypatch) -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is not installed")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls of the test
    # itself are still synchronous and safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=live_server.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()


class Shots:
    def __init__(self, page, test: str) -> None:
        self.page, self.test = page, test

    def __call__(self, step: str, *, full_page: bool = True) -> None:
        path = SCREENSHOTS / f"{self.test}-{step}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        assert path.stat().st_size > 0


def sign_in(page, email: str, password: str = PASSWORD) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.click("form.form button[type=submit]")


def current_totp(secret: str) -> str:
    """RFC 6238 code through allauth's own HOTP helper; never one about to expire."""
    if 30 - time.time() % 30 < 3:
        time.sleep(30 - time.time() % 30 + 0.2)
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def test_it_signs_in_with_email_and_password(tree, page):
    shot = Shots(page, "sign_in")
    verified_member(tree["acme"], Role.OWNER, "owner@acme.test")
    page.goto("/")
    page.wait_for_url("**/accounts/login/?next=/")
    shot("1-login")
    page.fill("input[name=login]", "owner@acme.test")
    page.fill("input[name=password]", "wrong password")
    page.click("form.form button[type=submit]")
    assert page.locator(".alert-error").inner_text() == (
        "The email address and/or password you specified are not correct."
    )
    shot("2-wrong-password")
    page.fill("input[name=password]", PASSWORD)
    page.click("form.form button[type=submit]")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    assert page.locator("#organization-name").inner_text() == "Acme"
    assert page.locator("#member-count").inner_text() == "1"
    assert page.locator(".sidenav a").all_inner_texts() == [
        "Dashboard",
        "Members",
        "Invitations",
        "API keys",
        "Audit log",
        "Operations",
        "Fleet dashboard",
        "Devices",
        "Alerts",
        "Groups",
        "Transfers",
        "Profiles",
        "Provisioning",
        "Import devices",
        "Enrollment",
        "Certificates",
        "Change requests",
        "Approvals",
        "Configuration",
        "Notification channels",
        "Dead letters",
        "Notifications",
        "Security",
    ]
    shot("3-dashboard")
    page.select_option("#org-switcher", label="\u2003Retail Co")
    page.wait_for_url(f"**/o/{tree['retail'].pk}/")
    assert page.locator("#organization-name").inner_text() == "Retail Co"
    shot("4-switched")


def test_it_enrols_totp_and_asks_for_it_at_the_next_sign_in(tree, page):
    shot = Shots(page, "mfa")
    user = verified_member(tree["acme"], Role.VIEWER, "viewer@acme.test")
    sign_in(page, "viewer@acme.test")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    page.click("text=Security")
    page.wait_for_url("**/account/security/")
    shot("1-security")
    page.click("#activate-totp")
    # allauth asks for the password again before a change to the second factor.
    page.wait_for_url("**/accounts/reauthenticate/?next=%2Faccounts%2F2fa%2Ftotp%2Factivate%2F")
    shot("2-reauthenticate")
    page.fill("input[name=password]", PASSWORD)
    page.click("form.form button[type=submit]")
    page.wait_for_url("**/accounts/2fa/totp/activate/")
    secret = page.input_value("#authenticator_secret")
    shot("3-activate")
    page.fill("input[name=code]", "000000" if current_totp(secret) != "000000" else "111111")
    page.click("form.form button[type=submit]")
    assert page.locator(".field-error").inner_text() == "Incorrect code."
    assert Authenticator.objects.filter(user=user).count() == 0
    shot("4-wrong-code")
    page.fill("input[name=code]", current_totp(secret))
    page.click("form.form button[type=submit]")
    page.wait_for_url("**/accounts/2fa/recovery-codes/")
    assert sorted(Authenticator.objects.filter(user=user).values_list("type", flat=True)) == [
        "recovery_codes",
        "totp",
    ]
    shot("5-recovery-codes")
    page.click("text=Sign out")
    page.wait_for_url("**/accounts/login/")
    sign_in(page, "viewer@acme.test")
    page.wait_for_url("**/accounts/2fa/authenticate/")
    shot("6-totp-step")
    page.fill("input[name=code]", current_totp(secret))
    page.click("form.form button[type=submit]")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    assert page.locator("#organization-name").inner_text() == "Acme"
    shot("7-signed-in")


def test_it_sends_a_member_of_an_mfa_organization_to_activation(tree, page):
    shot = Shots(page, "mfa_required")
    Organization.objects.filter(pk=tree["acme"].pk).update(require_mfa=True)
    verified_member(tree["acme"], Role.VIEWER, "viewer@acme.test")
    sign_in(page, "viewer@acme.test")
    # The activation page asks for the password again (allauth) and then shows the form.
    page.wait_for_url("**/accounts/reauthenticate/?next=%2Faccounts%2F2fa%2Ftotp%2Factivate%2F")
    assert page.locator(".alert-warning").inner_text() == (
        "Your organization requires two-factor authentication. "
        "Activate an authenticator app to continue."
    )
    shot("1-reauthenticate")
    page.fill("input[name=password]", PASSWORD)
    page.click("form.form button[type=submit]")
    page.wait_for_url("**/accounts/2fa/totp/activate/")
    assert page.locator("h1").inner_text() == "Activate Authenticator App"
    shot("2-activation")
    page.goto(f"/o/{tree['acme'].pk}/members/")
    page.wait_for_url("**/accounts/2fa/totp/activate/")


def test_it_manages_members_and_shows_it_in_the_audit_log(tree, page):
    shot = Shots(page, "members")
    acme = tree["acme"]
    verified_member(acme, Role.OWNER, "owner@acme.test")
    viewer = verified_member(acme, Role.VIEWER, "viewer@acme.test")
    verified_member(acme, Role.TECHNICIAN, "tech@acme.test")
    sign_in(page, "owner@acme.test")
    page.wait_for_url(f"**/o/{acme.pk}/")

    page.click(".sidenav >> text=Invitations")
    page.fill("input[name=email]", "not-an-email")
    page.click("#invite-form button[type=submit]")
    assert page.locator("#id_email-error").inner_text() == "Enter a valid email address."
    shot("1-invite-error")
    page.fill("input[name=email]", "new.person@example.com")
    page.select_option("select[name=role]", "operator")
    page.click("#invite-form button[type=submit]")
    assert page.locator(".alert-success").inner_text() == (
        "Invitation sent to new.person@example.com."
    )
    row = page.locator("#invitations tr[data-email='new.person@example.com']")
    assert row.locator("[data-status]").inner_text() == "Pending"
    shot("2-invited")

    page.click(".sidenav >> text=Members")
    row = page.locator("#members tr[data-email='viewer@acme.test']")
    row.locator("select[name=role]").select_option("operator")
    row.locator("button", has_text="Change role").click()
    assert page.locator(".alert-success").inner_text() == (
        "viewer@acme.test is now operator of Acme."
    )
    assert row.locator("[data-role]").inner_text() == "Operator"
    shot("3-role-changed")
    page.locator("#members tr[data-email='tech@acme.test'] button", has_text="Remove").click()
    assert page.locator(".alert-success").inner_text() == "tech@acme.test was removed from Acme."
    assert page.locator("#members tbody tr").evaluate_all(
        "rows => rows.map(row => row.dataset.email)"
    ) == ["owner@acme.test", "viewer@acme.test"]
    shot("4-removed")
    assert Membership.objects.get(user=viewer, organization=acme).role == "operator"
    assert User.objects.filter(email="tech@acme.test").exists() is True

    page.click(".sidenav >> text=Audit log")
    actions = page.locator("#audit-rows tr").evaluate_all("rows => rows.map(r => r.dataset.action)")
    assert actions == [
        "membership.delete",
        "membership.update",
        "invitation.create",
        "organization.create",
    ]
    assert AuditLog.objects.filter(actor_label="owner@acme.test").count() == 3
    shot("5-audit-log")
    page.fill("#id_action", "membership.")
    page.click("#audit-filter button[type=submit]")
    actions = page.locator("#audit-rows tr").evaluate_all("rows => rows.map(r => r.dataset.action)")
    assert actions == ["membership.delete", "membership.update"]
    shot("6-audit-filtered")

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"/o/{acme.pk}/members/")
    assert page.evaluate("document.documentElement.scrollWidth") == 390
    assert page.locator(".sidenav").is_visible() is False  # a drawer behind the menu button
    shot("7-phone-members")
    page.click("[data-nav-toggle]")
    page.wait_for_function("document.querySelector('.sidenav').getBoundingClientRect().x >= 0")
    assert page.locator(".sidenav").is_visible() is True
    shot("8-phone-navigation", full_page=False)
    page.click(".sidenav >> text=Audit log")
    page.wait_for_url(f"**/o/{acme.pk}/audit/")
    shot("9-phone-audit-log")


def test_phone_layout_of_the_login_page(tree, page):
    shot = Shots(page, "phone")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/accounts/login/")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width == 390
    shot("1-login")
