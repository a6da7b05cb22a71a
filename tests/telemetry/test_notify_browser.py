"""The notifications in Debian's Chromium: the header bell and its count, the inbox, the
preferences form, and a channel created with its secret shown once and a test sent.

Screenshots land in test-artifacts/screenshots/notify-*.png.
"""

from __future__ import annotations

import pytest
from django.db import connections

from apps.accounts.roles import Role
from apps.core.models import EventDelivery
from apps.telemetry.models import Notification, NotificationChannel, NotificationPreference
from apps.telemetry.notify import secrets
from apps.telemetry.notify.fanout import CONSUMER, channel_consumer
from tests.portal.conftest import verified_member
from tests.portal.test_browser import Shots, browser, sign_in

from .notify_support import emit_alert, endpoint, run

__all__ = ["browser"]

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=live_server.url)
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    try:
        yield page
    finally:
        context.close()
        # the test's ORM calls ran beside Playwright's greenlets, on a connection of their own
        # context: close it so the test database can be dropped
        connections.close_all()


def test_bell_inbox_and_preferences(tree, page):
    shot = Shots(page, "notify")
    viewer = verified_member(tree["acme"], Role.VIEWER, "viewer@acme.test")
    for overrides in (
        {"severity": "critical", "rule_name": "Battery low", "message": "battery 4% < 10%"},
        {"severity": "major", "message": "temperature 91.5 > 80"},
        {
            "severity": "warning",
            "rule_name": "Door open",
            "device_serial": "SN-0007",
            "message": "door open for 10 minutes",
        },
    ):
        run(emit_alert(tree["retail"], **overrides), CONSUMER)

    sign_in(page, "viewer@acme.test")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    bell = page.locator("#notification-bell")
    assert bell.locator(".bell-count").inner_text() == "3"
    shot("1-bell", full_page=False)

    bell.click()
    page.wait_for_url("**/notifications/")
    items = page.locator("#inbox .inbox-item")
    assert items.locator(".inbox-title").all_inner_texts() == [
        "[WARNING] Opened: Door open on SN-0007",
        "[MAJOR] Opened: Overheating on SN-0042",
        "[CRITICAL] Opened: Battery low on SN-0042",
    ]
    assert page.locator("#inbox .is-unread").count() == 3
    shot("2-inbox")

    items.nth(1).locator("text=Mark read").click()
    page.wait_for_url("**/notifications/")
    assert page.locator("#notification-bell .bell-count").inner_text() == "2"
    assert page.locator("#inbox .is-unread").count() == 2
    page.click("#read-all")
    page.wait_for_url("**/notifications/")
    assert page.locator("#notification-bell .bell-count").count() == 0
    assert page.locator(".alert-success").inner_text() == "2 notifications marked read."
    shot("3-all-read")

    page.click("text=preferences")
    page.wait_for_url("**/notifications/preferences/")
    page.uncheck("#id_email")
    page.select_option("#id_min_severity", "major")
    page.fill("#id_quiet_start", "22:00")
    page.fill("#id_quiet_end", "07:00")
    page.select_option("#id_timezone", "Europe/Paris")
    shot("4-preferences")
    page.click("#preferences-form button[type=submit]")
    page.wait_for_url("**/notifications/preferences/")
    assert (
        page.locator(".alert-success").inner_text() == "Your notification preferences were saved."
    )
    saved = NotificationPreference.objects.get(user=viewer)
    assert (saved.email, saved.min_severity, saved.timezone) == (False, "major", "Europe/Paris")
    assert (str(saved.quiet_start), str(saved.quiet_end)) == ("22:00:00", "07:00:00")
    assert Notification.objects.filter(user=viewer, medium="portal", read_at=None).count() == 0


def test_a_channel_is_created_tested_dead_lettered_and_redelivered(tree, page, settings):
    shot = Shots(page, "notify-channel")
    settings.OUTBOX_MAX_ATTEMPTS = 1
    verified_member(tree["acme"], Role.OWNER, "owner@acme.test")
    sign_in(page, "owner@acme.test")
    page.wait_for_url(f"**/o/{tree['acme'].pk}/")
    with endpoint(status=503) as hook:
        page.click("text=Notification channels")
        page.wait_for_url(f"**/o/{tree['acme'].pk}/notification-channels/")
        page.click("#add-channel")
        page.fill("#id_name", "Operations pager")
        page.select_option("#id_kind", "webhook")
        page.fill("#id_url", hook.url)
        page.select_option("#id_min_severity", "major")
        page.fill("#id_events", "alert.opened, alert.resolved")
        shot("1-form")
        page.click("#channel-form button[type=submit]")
        page.wait_for_url("**/secret/")
        channel = NotificationChannel.objects.get(name="Operations pager")
        hook.secret = page.locator("#channel-secret").inner_text()
        assert hook.secret == secrets.decrypt(channel.secret_encrypted)
        shot("2-secret-once")
        page.reload()
        assert page.locator("#channel-secret").count() == 0
        assert page.locator("#channel-secret-gone").is_visible()

        page.click("text=Back to the channel")
        page.click("#send-test")
        page.wait_for_selector(".alert-success")
        consumer = channel_consumer(channel.pk)
        test_event = EventDelivery.objects.get(consumer=consumer).event
        assert run(test_event, consumer) == "dead"  # what a worker would do: the endpoint is down
        page.reload()
        row = page.locator("#channel-troubles tbody tr")
        assert row.locator("[data-status]").inner_text() == "Dead letter"
        assert row.locator("td[data-label='Last error']").inner_text() == (
            "ChannelDeliveryError: HTTP 503 from the endpoint: ok"
        )
        shot("3-dead-letter")

        hook.status = 204
        row.locator("text=Redeliver").click()
        page.wait_for_selector(".alert-success")
        assert page.locator("#channel-troubles [data-status]").inner_text() == "Queued"
        assert run(test_event, consumer) == "delivered"
        page.reload()
        assert page.locator("#no-troubles").is_visible()
        shot("4-delivered")

    assert [request.verified for request in hook.received] == [True, True]
    assert hook.received[-1].json()["type"] == "notification.test"
    page.goto(f"/o/{tree['acme'].pk}/notification-channels/")
    assert page.locator("#channels tbody tr td[data-label=Name]").all_inner_texts() == [
        "Operations pager"
    ]
    shot("5-list")
