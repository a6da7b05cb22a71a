"""Portal pages of the notifications: the bell, the inbox (one's own only), the preferences,
and the channel pages (anonymous -> login, sibling -> 404, role without the permission -> 403,
allowed -> the exact state), with the secret shown once."""

from __future__ import annotations

import re
from datetime import time

import pytest
from django.urls import reverse

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, EventDelivery
from apps.telemetry.models import Notification, NotificationChannel, NotificationPreference
from apps.telemetry.notify import secrets, services
from apps.telemetry.notify.fanout import CONSUMER, channel_consumer
from tests.portal.conftest import verified_member

from .notify_support import emit_alert, run

pytestmark = pytest.mark.django_db
HOOK = "http://127.0.0.1:9/hooks/fleetops"


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
def channel(tree) -> NotificationChannel:
    return services.channel_create(
        actor=SYSTEM, organization=tree["retail"], name="Ops hook", kind="webhook", url=HOOK
    ).channel


def signed_in(client, user):
    client.force_login(user)
    return client


def ids(response, attribute: str) -> list[str]:
    return re.findall(rf'data-{attribute}="([^"]+)"', response.content.decode())


def notify(tree, people, **overrides) -> None:
    event = emit_alert(tree["acme"], **overrides)
    run(event, CONSUMER)


# --- the bell and the inbox --------------------------------------------------------------------


def test_the_header_bell_shows_the_unread_count(client, tree, people) -> None:
    notify(tree, people)
    notify(tree, people, severity="critical")
    page = signed_in(client, people["viewer"]).get(
        reverse("portal:dashboard", args=[tree["acme"].pk])
    )
    bell = client.get(reverse("notify:bell"))

    assert re.findall(r'id="notification-bell"[^>]*data-unread="(\d+)"', page.content.decode()) == [
        "2"
    ]
    assert '<span class="bell-count" aria-hidden="true">2</span>' in bell.content.decode()
    billing = signed_in(client, people["billing"]).get(reverse("notify:bell"))
    assert 'data-unread="0"' in billing.content.decode()
    assert "bell-count" not in billing.content.decode()


def test_the_inbox_lists_ones_own_notifications_only(client, tree, people) -> None:
    notify(tree, people)
    own = Notification.objects.filter(user=people["viewer"], medium="portal")
    response = signed_in(client, people["viewer"]).get(reverse("notify:inbox"))

    assert response.status_code == 200
    assert ids(response, "notification-id") == [str(row.pk) for row in own]
    assert "[MAJOR] Opened: Overheating on SN-0042" in response.content.decode()


def test_opening_a_notification_marks_it_read_and_follows_its_link(client, tree, people) -> None:
    notify(tree, people)
    mine = Notification.objects.get(user=people["viewer"], medium="portal")
    theirs = Notification.objects.get(user=people["owner"], medium="portal")
    signed_in(client, people["viewer"])

    opened = client.post(reverse("notify:open", args=[mine.pk]))
    other = client.post(reverse("notify:open", args=[theirs.pk]))

    assert (opened.status_code, opened["Location"]) == (302, mine.url)
    assert other.status_code == 404
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.read_at is not None, theirs.read_at) == (True, None)


def test_mark_read_in_place_and_mark_all_read(client, tree, people) -> None:
    notify(tree, people)
    notify(tree, people, event_type="alert.resolved", status="resolved")
    first, second = Notification.objects.filter(user=people["viewer"], medium="portal")
    signed_in(client, people["viewer"])

    stay = client.post(reverse("notify:open", args=[first.pk]), {"stay": "1"})
    unread_page = client.get(reverse("notify:inbox"), {"unread": "1"})
    everything = client.post(reverse("notify:read-all"), follow=True)

    assert (stay.status_code, stay["Location"]) == (302, reverse("notify:inbox"))
    assert ids(unread_page, "notification-id") == [str(second.pk)]
    assert "1 notification marked read." in everything.content.decode()
    unread = Notification.objects.filter(medium="portal", read_at=None)
    assert (
        unread.filter(user=people["viewer"]).count(),
        unread.filter(user=people["owner"]).count(),
    ) == (0, 2)


def test_the_inbox_pages_with_a_cursor(client, tree, people) -> None:
    for index in range(35):
        Notification.objects.create(
            user=people["viewer"], organization=tree["acme"], medium="portal", title=f"n{index}"
        )
    signed_in(client, people["viewer"])

    first = client.get(reverse("notify:inbox"))
    cursor = re.search(r'before=([^"]+)"', first.content.decode()).group(1).replace("&amp;", "&")
    second = client.get(reverse("notify:inbox") + "?before=" + cursor)

    assert len(ids(first, "notification-id")) == 30
    assert len(ids(second, "notification-id")) == 5
    assert set(ids(first, "notification-id")).isdisjoint(ids(second, "notification-id"))


def test_anonymous_visitors_go_to_the_login_page(client, tree, channel) -> None:
    for url in (
        reverse("notify:inbox"),
        reverse("notify:preferences"),
        reverse("notify:channels", args=[tree["retail"].pk]),
        reverse("notify:channel", args=[channel.pk]),
    ):
        response = client.get(url)
        assert (response.status_code, response["Location"].split("?")[0]) == (
            302,
            "/accounts/login/",
        )


# --- preferences -------------------------------------------------------------------------------


def test_preferences_form_saves_quiet_hours_and_time_zone(client, tree, people) -> None:
    signed_in(client, people["viewer"])
    form = client.get(reverse("notify:preferences"))
    response = client.post(
        reverse("notify:preferences"),
        {
            "portal": "on",
            "min_severity": "major",
            "quiet_start": "22:00",
            "quiet_end": "07:00",
            "timezone": "Europe/Paris",
        },
    )

    assert form.status_code == 200
    assert '<option value="Europe/Paris">Europe/Paris</option>' in form.content.decode()
    assert (response.status_code, response["Location"]) == (302, reverse("notify:preferences"))
    saved = NotificationPreference.objects.get(user=people["viewer"])
    assert (saved.portal, saved.email, saved.min_severity) == (True, False, "major")
    assert (saved.quiet_start, saved.quiet_end, saved.timezone) == (
        time(22),
        time(7),
        "Europe/Paris",
    )


def test_half_a_quiet_window_is_refused_and_nothing_is_saved(client, tree, people) -> None:
    signed_in(client, people["viewer"])
    response = client.post(
        reverse("notify:preferences"),
        {"portal": "on", "min_severity": "major", "quiet_start": "22:00", "timezone": "UTC"},
    )

    assert response.status_code == 400
    assert (
        "Give both the start and the end of the quiet hours, or neither."
        in response.content.decode()
    )
    assert NotificationPreference.objects.exists() is False


# --- channels ----------------------------------------------------------------------------------


def test_channel_pages_refuse_siblings_and_roles_without_the_permission(
    client, tree, people, channel
) -> None:
    list_url = reverse("notify:channels", args=[tree["retail"].pk])
    detail_url = reverse("notify:channel", args=[channel.pk])
    create_url = reverse("notify:channel-create", args=[tree["retail"].pk])
    edit_url = reverse("notify:channel-edit", args=[channel.pk])
    posts = [
        reverse(name, args=[channel.pk])
        for name in ("notify:channel-test", "notify:channel-rotate", "notify:channel-delete")
    ]
    audits = AuditLog.objects.count()

    stranger = signed_in(client, people["stranger"])
    assert [
        stranger.get(url).status_code for url in (list_url, detail_url, create_url, edit_url)
    ] == [404] * 4
    assert [stranger.post(url).status_code for url in posts] == [404] * 3
    billing = signed_in(client, people["billing"])
    assert [billing.get(url).status_code for url in (list_url, detail_url)] == [403, 404]
    viewer = signed_in(client, people["viewer"])
    assert [viewer.get(url).status_code for url in (list_url, detail_url)] == [200, 200]
    assert [viewer.get(url).status_code for url in (create_url, edit_url)] == [403, 403]
    assert [viewer.post(url).status_code for url in posts] == [403] * 3
    assert AuditLog.objects.count() == audits
    assert (
        NotificationChannel.objects.get(pk=channel.pk).secret_encrypted == channel.secret_encrypted
    )


def test_creating_a_webhook_channel_shows_its_secret_exactly_once(client, tree, people) -> None:
    signed_in(client, people["owner"])
    response = client.post(
        reverse("notify:channel-create", args=[tree["retail"].pk]),
        {
            "name": "Pager",
            "kind": "webhook",
            "url": HOOK,
            "min_severity": "major",
            "events": "alert.opened, alert.resolved",
            "enabled": "on",
        },
    )
    channel = NotificationChannel.objects.get(name="Pager")
    secret_url = reverse("notify:channel-secret", args=[channel.pk])

    shown = client.get(secret_url)
    again = client.get(secret_url)

    assert (response.status_code, response["Location"]) == (302, secret_url)
    secret = secrets.decrypt(channel.secret_encrypted)
    assert f'<code class="secret" id="channel-secret">{secret}</code>' in shown.content.decode()
    assert shown["Cache-Control"] == "no-store"
    assert secret not in again.content.decode()
    assert 'id="channel-secret-gone"' in again.content.decode()
    assert (channel.organization_id, channel.events, channel.min_severity) == (
        tree["retail"].pk,
        ["alert.opened", "alert.resolved"],
        "major",
    )


def test_a_bad_url_is_shown_on_the_form_and_nothing_is_created(client, tree, people) -> None:
    signed_in(client, people["owner"])
    response = client.post(
        reverse("notify:channel-create", args=[tree["retail"].pk]),
        {"name": "Pager", "kind": "webhook", "url": "ftp://example.com/", "min_severity": "info"},
    )

    assert response.status_code == 400
    assert "Only http and https URLs are allowed." in response.content.decode()
    assert NotificationChannel.objects.exists() is False


def test_edit_rotate_test_and_delete_from_the_channel_page(client, tree, people, channel) -> None:
    signed_in(client, people["owner"])
    before = channel.secret_encrypted

    edited = client.post(
        reverse("notify:channel-edit", args=[channel.pk]),
        {"name": "Ops pager", "url": HOOK, "min_severity": "critical", "events": ""},
    )
    rotated = client.post(reverse("notify:channel-rotate", args=[channel.pk]))
    tested = client.post(reverse("notify:channel-test", args=[channel.pk]), follow=True)
    channel.refresh_from_db()

    assert edited.status_code == 302
    assert (channel.name, channel.min_severity, channel.enabled) == ("Ops pager", "critical", False)
    assert rotated["Location"] == reverse("notify:channel-secret", args=[channel.pk])
    assert bytes(channel.secret_encrypted) != bytes(before)
    test_delivery = EventDelivery.objects.get(consumer=channel_consumer(channel.pk))
    assert (test_delivery.event.type, test_delivery.status) == ("notification.test", "pending")
    assert "A test message is on its way" in tested.content.decode()

    deleted = client.post(reverse("notify:channel-delete", args=[channel.pk]))
    assert deleted["Location"] == reverse("notify:channels", args=[tree["retail"].pk])
    assert NotificationChannel.objects.filter(pk=channel.pk).exists() is False


def test_a_dead_delivery_shows_on_the_channel_page_and_can_be_redelivered(
    client, tree, people, channel, settings
) -> None:
    settings.OUTBOX_MAX_ATTEMPTS = 1
    event = services.channel_send_test(actor=SYSTEM, channel=channel)
    consumer = channel_consumer(channel.pk)
    assert run(event, consumer) == "dead"  # nothing listens on port 9
    dead = EventDelivery.objects.get(consumer=consumer)

    viewer_page = signed_in(client, people["viewer"]).get(
        reverse("notify:channel", args=[channel.pk])
    )
    refused = client.post(reverse("notify:channel-redeliver", args=[channel.pk, dead.pk]))
    owner_page = signed_in(client, people["owner"]).get(
        reverse("notify:channel", args=[channel.pk])
    )
    redelivered = client.post(reverse("notify:channel-redeliver", args=[channel.pk, dead.pk]))

    assert ids(viewer_page, "delivery-id") == [str(dead.pk)]
    assert "Dead letter" in viewer_page.content.decode()
    assert "ConnectError" in viewer_page.content.decode()
    assert "Redeliver</button>" not in viewer_page.content.decode()
    assert refused.status_code == 403
    assert "Redeliver</button>" in owner_page.content.decode()
    assert redelivered.status_code == 302
    dead.refresh_from_db()
    assert (dead.status, dead.attempts) == ("pending", 0)
