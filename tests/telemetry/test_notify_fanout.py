"""The ``notifications`` consumer against the database: who is notified (roles, the tree,
preferences, quiet hours in their time zone), which channels get a delivery, idempotency under
redelivery, and the email each notification sends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time

import pytest
from django.core import mail

from apps.accounts.models import User
from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import EventDelivery
from apps.telemetry.models import Notification, NotificationPreference
from apps.telemetry.notify import services
from apps.telemetry.notify.fanout import CONSUMER, channel_consumer, email_consumer
from tests.factories import make_member

from .notify_support import ALERT_ID, consumers_of, delivery, emit_alert, run

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
NIGHT = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)  # 00:30 in Paris, 18:30 in New York


def media(user: User) -> list[str]:
    return sorted(Notification.objects.filter(user=user).values_list("medium", flat=True))


def received(event) -> list[tuple[str, str]]:
    return sorted(Notification.objects.filter(event=event).values_list("user__email", "medium"))


@pytest.fixture
def people(tree) -> dict[str, User]:
    """Members around the alert's organization, retail (below acme, above store)."""
    found = {
        "platform-admin": make_member(tree["platform"], Role.ADMIN, "admin@platform.test"),
        "acme-owner": make_member(tree["acme"], Role.OWNER, "owner@acme.test"),
        "acme-billing": make_member(tree["acme"], Role.BILLING, "billing@acme.test"),
        "retail-viewer": make_member(tree["retail"], Role.VIEWER, "viewer@retail.test"),
        "retail-technician": make_member(tree["retail"], Role.TECHNICIAN, "tech@retail.test"),
        "store-operator": make_member(tree["store"], Role.OPERATOR, "operator@store.test"),
        "hospital-admin": make_member(tree["hospital"], Role.ADMIN, "admin@hospital.test"),
        "globex-owner": make_member(tree["globex"], Role.OWNER, "owner@globex.test"),
        "retail-gone": make_member(tree["retail"], Role.VIEWER, "gone@retail.test"),
    }
    User.objects.filter(pk=found["retail-gone"].pk).update(is_active=False)
    return found


def test_members_of_the_organization_and_its_ancestors_who_see_alerts_are_notified(
    tree, people
) -> None:
    event = emit_alert(tree["retail"], at=DAY)

    assert run(event, CONSUMER) == "delivered"

    notified = sorted({email for email, _ in received(event)})
    assert notified == [
        "admin@platform.test",
        "owner@acme.test",
        "tech@retail.test",
        "viewer@retail.test",
    ]
    assert media(people["acme-owner"]) == ["email", "portal"]
    row = Notification.objects.get(user=people["retail-viewer"], medium="portal")
    assert (row.organization_id, row.severity, row.title, row.body, row.read_at, row.sent_at) == (
        tree["retail"].pk,
        "major",
        "[MAJOR] Opened: Overheating on SN-0042",
        "temperature 91.5 > 80",
        None,
        None,
    )


def test_a_descendant_organizations_alert_never_reaches_members_of_its_siblings(
    tree, people
) -> None:
    event = emit_alert(tree["hospital"], at=DAY)

    run(event, CONSUMER)

    assert sorted({email for email, _ in received(event)}) == [
        "admin@hospital.test",
        "admin@platform.test",
        "owner@acme.test",
    ]


def test_a_member_of_a_deactivated_organization_is_not_notified(tree, people) -> None:
    from apps.accounts.models import Organization

    Organization.objects.filter(pk=tree["acme"].pk).update(is_active=False)
    event = emit_alert(tree["retail"], at=DAY)

    run(event, CONSUMER)

    assert "owner@acme.test" not in {email for email, _ in received(event)}


@pytest.mark.parametrize(
    ("preference", "severity", "at", "by", "expected"),
    [
        (None, "major", DAY, None, ["email", "portal"]),
        (None, "info", DAY, None, []),  # the default floor is warning
        ({"portal": False}, "major", DAY, None, ["email"]),
        ({"email": False}, "major", DAY, None, ["portal"]),
        ({"min_severity": "critical"}, "major", DAY, None, []),
        ({"min_severity": "info"}, "info", DAY, None, ["email", "portal"]),
        # 22:00-07:00 in Paris: 23:30 UTC is 00:30 there
        (
            {"quiet_start": time(22), "quiet_end": time(7), "timezone": "Europe/Paris"},
            "major",
            NIGHT,
            None,
            ["portal"],
        ),
        (
            {"quiet_start": time(22), "quiet_end": time(7), "timezone": "Europe/Paris"},
            "critical",
            NIGHT,
            None,
            ["email", "portal"],
        ),
        # the same window in New York: 23:30 UTC is 18:30 there, not quiet
        (
            {"quiet_start": time(22), "quiet_end": time(7), "timezone": "America/New_York"},
            "major",
            NIGHT,
            None,
            ["email", "portal"],
        ),
        # a daytime window in UTC
        ({"quiet_start": time(9), "quiet_end": time(17)}, "major", DAY, None, ["portal"]),
        # their own acknowledgement is not notified to them
        (None, "major", DAY, "viewer@retail.test", []),
        (None, "major", DAY, "someone@else.test", ["email", "portal"]),
    ],
)
def test_preferences_decide_what_a_person_gets(tree, preference, severity, at, by, expected):
    viewer = make_member(tree["retail"], Role.VIEWER, "viewer@retail.test")
    if preference is not None:
        NotificationPreference.objects.create(user=viewer, **preference)
    event = emit_alert(tree["retail"], "alert.acknowledged", at=at, severity=severity, by=by)

    run(event, CONSUMER)

    assert media(viewer) == expected
    emails = [
        email_consumer(pk)
        for pk in Notification.objects.filter(medium="email").values_list("pk", flat=True)
    ]
    assert consumers_of(event) == sorted([CONSUMER, *emails])


def test_a_redelivered_event_notifies_nobody_twice(tree, people) -> None:
    event = emit_alert(tree["retail"], at=DAY)
    run(event, CONSUMER)
    first = received(event)
    first_deliveries = consumers_of(event)
    for consumer in first_deliveries:
        if consumer.startswith("notify.email."):
            run(event, consumer)
    assert len(mail.outbox) == 4

    # the same event delivered again (a worker died after its side effects, a redelivery)
    EventDelivery.objects.filter(event=event, consumer=CONSUMER).update(status="pending")
    assert run(event, CONSUMER) == "delivered"
    for consumer in first_deliveries:
        if consumer.startswith("notify.email."):
            EventDelivery.objects.filter(event=event, consumer=consumer).update(status="pending")
            assert run(event, consumer) == "delivered"

    assert received(event) == first
    assert len(first) == 8  # four people, portal and email each
    assert consumers_of(event) == first_deliveries
    assert len(mail.outbox) == 4


def test_channels_of_the_organization_and_its_ancestors_get_one_delivery_each(tree) -> None:
    def channel(organization, name, **fields):
        return services.channel_create(
            actor=SYSTEM,
            organization=organization,
            name=name,
            kind="webhook",
            url="http://127.0.0.1:9/hook",
            **fields,
        ).channel

    wanted = [
        channel(tree["retail"], "retail all"),
        channel(tree["acme"], "acme opened", events=["alert.opened"]),
        channel(tree["platform"], "platform major", min_severity="major"),
    ]
    channel(tree["acme"], "acme resolved only", events=["alert.resolved"])
    channel(tree["acme"], "acme critical", min_severity="critical")
    channel(tree["acme"], "acme disabled", enabled=False)
    channel(tree["store"], "store below")
    channel(tree["hospital"], "hospital sibling")
    channel(tree["globex"], "globex elsewhere")
    event = emit_alert(tree["retail"], at=DAY)

    run(event, CONSUMER)

    assert consumers_of(event) == sorted([CONSUMER, *(channel_consumer(c.pk) for c in wanted)])
    EventDelivery.objects.filter(event=event, consumer=CONSUMER).update(status="pending")
    run(event, CONSUMER)
    assert EventDelivery.objects.filter(event=event).count() == 4


def test_the_fan_out_runs_a_fixed_number_of_queries_whatever_the_audience(
    tree, django_assert_num_queries
) -> None:
    for index in range(30):
        make_member(tree["retail"], Role.VIEWER, f"viewer{index}@retail.test")
    services.channel_create(
        actor=SYSTEM,
        organization=tree["acme"],
        name="ops",
        kind="slack",
        url="http://127.0.0.1:9/s",
    )
    event = emit_alert(tree["retail"], at=DAY)

    # run(): read + lease; deliver(): renew + load + savepoint + mark + release; the consumer:
    # organization + recipients + insert + unsent emails + their deliveries (read, insert) +
    # channels + channel deliveries (read, insert): 9 whatever the number of people
    with django_assert_num_queries(16):
        assert run(event, CONSUMER) == "delivered"

    assert Notification.objects.filter(event=event).count() == 60
    assert EventDelivery.objects.filter(event=event).count() == 32


def test_an_alert_event_without_an_organization_notifies_nobody(tree, people) -> None:
    from apps.core import events

    event = events.emit("alert.opened", organization_id=None, payload={})

    assert run(event, CONSUMER) == "delivered"
    assert Notification.objects.count() == 0


# --- email ---------------------------------------------------------------------------------------


def test_each_email_notification_sends_one_plain_text_and_html_email(tree, settings) -> None:
    settings.SITE_URL = "https://fleet.example.com"
    viewer = make_member(tree["retail"], Role.VIEWER, "viewer@retail.test")
    NotificationPreference.objects.create(user=viewer, timezone="Europe/Paris")
    event = emit_alert(tree["retail"], at=DAY, severity="critical")
    run(event, CONSUMER)
    email = Notification.objects.get(user=viewer, medium="email")

    assert run(event, email_consumer(email.pk)) == "delivered"

    [message] = mail.outbox
    assert message.subject == "[Fleetops] [CRITICAL] Opened: Overheating on SN-0042"
    assert (message.to, message.from_email) == (["viewer@retail.test"], settings.DEFAULT_FROM_EMAIL)
    assert message.extra_headers == {
        "Auto-Submitted": "auto-generated",
        "X-Fleetops-Event": str(event.pk),
    }
    assert message.body == (
        "[CRITICAL] Opened: Overheating on SN-0042\n"
        "\n"
        "temperature 91.5 > 80\n"
        "\n"
        "Severity:     critical\n"
        "Status:       open\n"
        "Rule:         Overheating\n"
        "Device:       SN-0042\n"
        "Organization: Retail Co\n"
        "Opened:       2026-03-02 00:30 (Europe/Paris)\n"
        "\n"
        f"Open it: https://fleet.example.com/alerts/{ALERT_ID}/\n"
        "\n"
        "--\n"
        "You receive this because you can see alerts of Retail Co.\n"
        "Your notifications: https://fleet.example.com/notifications/\n"
        "Choose what you receive and your quiet hours: "
        "https://fleet.example.com/notifications/preferences/\n"
    )
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    assert "<h1 style=" in html and ">[CRITICAL] Opened: Overheating on SN-0042</h1>" in html
    assert "2026-03-02 00:30 (Europe/Paris)" in html
    email.refresh_from_db()
    assert email.sent_at is not None
    # delivered again: already sent, nothing more goes out
    EventDelivery.objects.filter(event=event, consumer=email_consumer(email.pk)).update(
        status="pending"
    )
    assert run(event, email_consumer(email.pk)) == "delivered"
    assert len(mail.outbox) == 1


def test_a_notification_links_to_the_alert_or_else_to_its_device(tree) -> None:
    make_member(tree["retail"], Role.VIEWER, "viewer@retail.test")
    device_id = uuid.UUID("0190f2a4-0000-7000-8000-00000000d0d0")
    with_alert = emit_alert(tree["retail"], at=DAY, device_id=str(device_id))
    device_only = emit_alert(tree["retail"], at=DAY, device_id=str(device_id), alert_id=None)
    neither = emit_alert(tree["retail"], at=DAY, alert_id=None)
    for event in (with_alert, device_only, neither):
        run(event, CONSUMER)

    urls = [
        Notification.objects.get(event=event, medium="portal").url
        for event in (with_alert, device_only, neither)
    ]
    assert urls == [
        f"/alerts/{ALERT_ID}/",
        f"/o/{tree['retail'].pk}/devices/{device_id}/",
        "",
    ]


def test_an_email_that_cannot_be_sent_is_retried_then_dead_lettered(tree, settings) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2
    settings.OUTBOX_MAX_ATTEMPTS = 2
    make_member(tree["retail"], Role.VIEWER, "viewer@retail.test")
    event = emit_alert(tree["retail"], at=DAY)
    run(event, CONSUMER)
    consumer = email_consumer(Notification.objects.get(medium="email").pk)

    assert [run(event, consumer), run(event, consumer)] == ["pending", "dead"]

    dead = delivery(event, consumer)
    assert (dead.status, dead.attempts) == ("dead", 2)
    assert dead.last_error.startswith("ConnectionRefusedError")
    assert Notification.objects.get(medium="email").sent_at is None


# --- with the alerting's own events --------------------------------------------------------------


def test_an_acknowledgement_made_in_alerting_notifies_everyone_but_its_author(tree) -> None:
    from apps.core.models import Event
    from apps.telemetry.alerting.services import alert_acknowledge
    from apps.telemetry.models import Alert
    from tests.factories import actor

    from .alert_support import make_rule

    technician = make_member(tree["retail"], Role.TECHNICIAN, "tech@retail.test")
    make_member(tree["acme"], Role.OWNER, "owner@acme.test")
    rule = make_rule(tree["retail"], name="Overheating", severity="critical")
    alert = Alert.objects.create(
        organization=tree["retail"],
        rule=rule,
        severity="critical",
        message="temperature 91.5 > 80",
        opened_at=DAY,
    )

    alert_acknowledge(actor=actor(technician), alert=alert)
    event = Event.objects.get(type="alert.acknowledged")
    assert run(event, CONSUMER) == "delivered"

    assert received(event) == [("owner@acme.test", "email"), ("owner@acme.test", "portal")]
    assert Notification.objects.get(event=event, medium="portal").title == (
        "[CRITICAL] Acknowledged: Overheating"
    )
