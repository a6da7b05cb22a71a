"""The notification admins: channels (no secret ever shown, Slack URLs masked, actions through
the services and scoped), notifications and preferences read-only."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from apps.accounts.models import Membership, Organization, User
from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import EventDelivery
from apps.telemetry.models import Notification, NotificationChannel, NotificationPreference
from apps.telemetry.notify import services
from apps.telemetry.notify.fanout import channel_consumer
from tests.factories import UserFactory, make_member

pytestmark = pytest.mark.django_db

CHANNELS = "/admin/telemetry/notificationchannel/"
NOTIFICATIONS = "/admin/telemetry/notification/"
PREFERENCES = "/admin/telemetry/notificationpreference/"
SLACK = "https://hooks.slack.com/services/T000/B000/XXXXsecretZZZZ"


def _superuser(client: Client) -> User:
    client.force_login(UserFactory(is_staff=True, is_superuser=True, email="root@example.com"))
    return client


def _staff(client: Client, organization: Organization, role: str) -> Client:
    user = UserFactory(is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="telemetry",
            codename__in=[
                "view_notificationchannel",
                "view_notification",
                "view_notificationpreference",
            ],
        )
    )
    Membership.objects.create(organization=organization, user=user, role=role)
    client.force_login(user)
    return client


@pytest.fixture
def channels(tree) -> dict[str, NotificationChannel]:
    def make(organization, name, kind, url):
        return services.channel_create(
            actor=SYSTEM, organization=organization, name=name, kind=kind, url=url
        ).channel

    return {
        "retail": make(tree["retail"], "Retail pager", "webhook", "http://127.0.0.1:9/hook"),
        "slack": make(tree["acme"], "Acme Slack", "slack", SLACK),
        "globex": make(tree["globex"], "Globex pager", "webhook", "http://127.0.0.1:9/hook"),
    }


def test_a_channels_page_shows_neither_its_secret_nor_a_slack_url(client, channels) -> None:
    _superuser(client)
    webhook = client.get(f"{CHANNELS}{channels['retail'].pk}/change/").content.decode()
    slack = client.get(f"{CHANNELS}{channels['slack'].pk}/change/").content.decode()

    assert "whsec_" not in webhook and "secret_encrypted" not in webhook
    assert f"?consumer__exact={channel_consumer(channels['retail'].pk)}" in webhook
    assert "https://hooks.slack.com/…ZZZZ" in slack
    assert "XXXXsecret" not in slack


def test_staff_see_and_act_on_their_organizations_channels_only(client, tree, channels) -> None:
    _staff(client, tree["acme"], Role.OWNER)
    listed = client.get(CHANNELS).content.decode()

    response = client.post(
        CHANNELS,
        {
            "action": "send_test",
            "_selected_action": [str(c.pk) for c in channels.values()],
        },
        follow=True,
    )

    assert sorted(re.findall(r">(\w+ (?:pager|Slack))</a>", listed)) == [
        "Acme Slack",
        "Retail pager",
    ]
    assert "Test queued: 2; unchanged: 0; not permitted: 0." in response.content.decode()
    queued = EventDelivery.objects.values_list("consumer", flat=True)
    assert sorted(queued) == sorted(
        channel_consumer(channels[key].pk) for key in ("retail", "slack")
    )


def test_a_viewer_on_staff_may_not_disable_a_channel(client, tree, channels) -> None:
    _staff(client, tree["acme"], Role.VIEWER)

    response = client.post(
        CHANNELS,
        {"action": "disable", "_selected_action": [str(channels["retail"].pk)]},
        follow=True,
    )

    assert "Disabled: 0; unchanged: 0; not permitted: 1." in response.content.decode()
    assert NotificationChannel.objects.get(pk=channels["retail"].pk).enabled is True


def test_notifications_and_preferences_are_read_only_and_scoped(client, tree) -> None:
    person = make_member(tree["retail"], Role.VIEWER, "viewer@retail.test")
    NotificationPreference.objects.create(user=person, timezone="Asia/Tokyo")
    mine = Notification.objects.create(
        user=person, organization=tree["retail"], medium="portal", title="retail one"
    )
    Notification.objects.create(
        user=person, organization=tree["globex"], medium="portal", title="globex one"
    )

    _staff(client, tree["acme"], Role.ADMIN)
    staff_list = client.get(NOTIFICATIONS).content.decode()
    staff_preferences = client.get(PREFERENCES).content.decode()
    _superuser(client)
    root_list = client.get(NOTIFICATIONS).content.decode()
    root_preferences = client.get(PREFERENCES).content.decode()
    change = client.get(f"{NOTIFICATIONS}{mine.pk}/change/").content.decode()

    assert ("retail one" in staff_list, "globex one" in staff_list) == (True, False)
    assert ("retail one" in root_list, "globex one" in root_list) == (True, True)
    assert (
        "viewer@retail.test" in staff_preferences,
        "viewer@retail.test" in root_preferences,
    ) == (
        False,
        True,
    )
    assert 'name="_save"' not in change
