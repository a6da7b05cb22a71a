"""The notification API: channels (CRUD, rotate-secret, test) against every role and a
sibling, the inbox that only ever shows its owner's notifications, and the preferences."""

from __future__ import annotations

from collections.abc import Callable
from datetime import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.core.models import AuditLog, EventDelivery
from apps.telemetry.models import Notification, NotificationChannel, NotificationPreference
from apps.telemetry.notify import secrets, services
from apps.telemetry.notify.fanout import channel_consumer
from tests.authz import (
    ROLES,
    SESSION,
    Attempt,
    Call,
    Case,
    Principal,
    World,
    assert_authz_matrix,
    authz_world,
    build_world,
    error,
    iso,
    last_audit,
    make_principal,
)

__all__ = ["authz_world"]

pytestmark = pytest.mark.django_db

URL = "/api/v1/notification-channels/"
INBOX = "/api/v1/notifications/"
PREFERENCES = "/api/v1/notification-preferences/me/"
VIEWERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.APPROVER, Role.TECHNICIAN, Role.VIEWER}
EDITORS = {Role.OWNER, Role.ADMIN}
HOOK = "http://127.0.0.1:9/hooks/fleetops"

Check = Callable[..., None]


def answers(expected: Callable[[Attempt], Any]) -> Callable[[Attempt, Any], None]:
    """An ``expect`` asserting that the response body is exactly ``expected(attempt)``."""

    def expect(attempt: Attempt, response: Any) -> None:
        assert response.json() == expected(attempt)

    return expect


@pytest.fixture
def session_world(tree) -> World:
    """Every role on acme and globex as portal sessions (the inbox and the preferences are
    people's; the channel matrices run with API keys too, through ``authz_world``)."""
    return build_world(tree, kind=SESSION)


@pytest.fixture
def owner(session_world) -> APIClient:
    return session_world.members[Role.OWNER].client


@pytest.fixture
def viewer(session_world) -> Principal:
    return session_world.members[Role.VIEWER]


# --- channels ----------------------------------------------------------------------------------


def channel_json(channel: NotificationChannel) -> dict[str, Any]:
    channel.refresh_from_db()
    return {
        "id": str(channel.pk),
        "organization": str(channel.organization_id),
        "name": channel.name,
        "kind": channel.kind,
        "url": channel.url,
        "enabled": channel.enabled,
        "min_severity": channel.min_severity,
        "events": channel.events,
        "signed": True,
        "previous_secret_expires_at": iso(channel.previous_secret_expires_at),
        "created_at": iso(channel.created_at),
        "updated_at": iso(channel.updated_at),
    }


def retail_channel(world: World) -> NotificationChannel:
    return services.channel_create(
        actor=SYSTEM,
        organization=world.tree["retail"],
        name="Ops hook",
        kind="webhook",
        url=HOOK,
        min_severity="major",
        events=["alert.opened"],
    ).channel


def channels_state(attempt: Attempt) -> list[tuple[Any, ...]]:
    return list(
        NotificationChannel.objects.order_by("id").values_list(
            "id", "name", "url", "enabled", "min_severity", "events", "secret_encrypted"
        )
    )


def pager(organization: Any, **fields: Any) -> dict[str, Any]:
    """A create request for a webhook channel "Pager" of ``organization``."""
    return {
        "organization": str(organization.pk),
        "name": "Pager",
        "kind": "webhook",
        "url": HOOK,
        **fields,
    }


@pytest.fixture
def channel_matrix(authz_world) -> Check:
    """Runs a channel endpoint's matrix (sessions, then API keys): the target is retail's
    channel and no refusal may change any channel row, unless the case says otherwise."""

    def check(**case: Any) -> None:
        defaults: dict[str, Any] = {"setup": retail_channel, "state": channels_state}
        assert_authz_matrix(authz_world, Case(**(defaults | case)))

    return check


def test_list_matrix(channel_matrix):
    channel_matrix(
        permission="notificationchannel.view",
        allowed=VIEWERS,
        request=lambda a: Call("get", URL, {"organization": str(a.target.organization_id)}),
        expect=answers(
            lambda a: {"next": None, "previous": None, "results": [channel_json(a.target)]}
        ),
        listing=True,
    )


def test_retrieve_matrix(channel_matrix):
    channel_matrix(
        permission="notificationchannel.view",
        allowed=VIEWERS,
        request=lambda a: Call("get", f"{URL}{a.target.pk}/"),
        expect=answers(lambda a: channel_json(a.target)),  # no "secret" key
    )


def test_create_matrix(channel_matrix, authz_world):
    retail = authz_world.tree["retail"]

    def expect(attempt, response):
        channel = NotificationChannel.objects.get(name="Pager")
        body = response.json()
        secret = body.pop("secret")
        assert body == channel_json(channel)
        assert (channel.organization_id, channel.kind, channel.events) == (
            retail.pk,
            "webhook",
            ["alert.opened", "alert.resolved"],
        )
        assert secret.startswith("whsec_") and secrets.decrypt(channel.secret_encrypted) == secret
        audit = last_audit("notificationchannel.create")
        assert (audit.object_id, audit.actor_label) == (str(channel.pk), attempt.principal.label)
        assert secret not in str(audit.changes)

    channel_matrix(
        permission="notificationchannel.add",
        allowed=EDITORS,
        setup=None,
        request=lambda a: Call(
            "post",
            URL,
            pager(retail, min_severity="minor", events=["alert.resolved", "alert.opened"]),
        ),
        status=201,
        expect=expect,
    )


def test_update_matrix(channel_matrix):
    def expect(attempt, response):
        assert response.json() == channel_json(attempt.target)
        assert (attempt.target.name, attempt.target.enabled) == ("Ops pager", False)
        assert last_audit("notificationchannel.change").changes == {
            "name": ["Ops hook", "Ops pager"],
            "enabled": [True, False],
        }

    channel_matrix(
        permission="notificationchannel.change",
        allowed=EDITORS,
        request=lambda a: Call(
            "patch", f"{URL}{a.target.pk}/", {"name": "Ops pager", "enabled": False}
        ),
        expect=expect,
    )


def test_delete_matrix(channel_matrix):
    def expect(attempt, response):
        assert NotificationChannel.objects.filter(pk=attempt.target.pk).exists() is False
        assert last_audit("notificationchannel.delete").object_id == str(attempt.target.pk)

    channel_matrix(
        permission="notificationchannel.delete",
        allowed=EDITORS,
        request=lambda a: Call("delete", f"{URL}{a.target.pk}/"),
        status=204,
        expect=expect,
    )


def test_rotate_secret_matrix(channel_matrix):
    def expect(attempt, response):
        body = response.json()
        secret = body.pop("secret")
        channel = NotificationChannel.objects.get(pk=attempt.target.pk)
        assert body == channel_json(channel)
        assert secrets.decrypt(channel.secret_encrypted) == secret
        assert channel.previous_secret_expires_at is not None
        assert last_audit("notificationchannel.rotate_secret").object_id == str(channel.pk)

    channel_matrix(
        permission="notificationchannel.change",
        allowed=EDITORS,
        request=lambda a: Call("post", f"{URL}{a.target.pk}/rotate-secret/"),
        expect=expect,
    )


def test_send_test_matrix(channel_matrix):
    def state(attempt):
        return EventDelivery.objects.filter(consumer=channel_consumer(attempt.target.pk)).count()

    def expect(attempt, response):
        consumer = channel_consumer(attempt.target.pk)
        test_delivery = EventDelivery.objects.select_related("event").get(consumer=consumer)
        assert response.json() == {"event": str(test_delivery.event_id), "consumer": consumer}
        assert (test_delivery.event.type, test_delivery.status) == ("notification.test", "pending")
        assert test_delivery.event.payload["by"] == attempt.principal.label
        assert last_audit("notificationchannel.test").object_id == str(attempt.target.pk)

    channel_matrix(
        permission="notificationchannel.change",
        allowed=EDITORS,
        request=lambda a: Call("post", f"{URL}{a.target.pk}/test/"),
        status=202,
        state=state,
        expect=expect,
    )


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"url": "ftp://example.com/x"}, {"url": ["Only http and https URLs are allowed."]}),
        ({"url": "not a url"}, {"url": ["Enter a valid URL."]}),
        ({"kind": "pigeon"}, {"kind": ['"pigeon" is not a valid choice.']}),
        ({"min_severity": "loud"}, {"min_severity": ['"loud" is not a valid choice.']}),
        (
            {"events": ["device.*"]},
            {
                "events": [
                    "'device.*' matches none of alert.opened, alert.acknowledged, alert.resolved."
                ]
            },
        ),
        ({"secret": "whsec_!!"}, {"secret": ["Not a valid whsec_ secret."]}),
        (
            {"kind": "slack", "secret": secrets.generate()},
            {"secret": ["Slack-compatible channels are not signed."]},
        ),
        ({"name": "  "}, {"name": ["This field may not be blank."]}),
    ],
)
def test_bad_input_gets_the_error_envelope_and_changes_nothing(tree, owner, body, fields):
    audits = AuditLog.objects.count()

    response = owner.post(URL, pager(tree["retail"], **body), format="json")

    assert response.status_code == 400
    assert error(response)["fields"] == fields
    assert (NotificationChannel.objects.count(), AuditLog.objects.count()) == (0, audits)


def test_a_duplicate_name_is_refused(tree, session_world, owner):
    retail_channel(session_world)

    response = owner.post(URL, pager(tree["retail"], name="Ops hook", kind="slack"), format="json")

    assert response.status_code == 400
    assert error(response)["fields"] == {"name": ["A channel with this name already exists here."]}


def test_a_given_secret_is_used_and_a_slack_url_is_shown_masked(tree, owner):
    secret = secrets.generate()
    slack_url = "https://hooks.slack.com/services/T000/B000/XXXXsecretZZZZ"

    signed = owner.post(URL, pager(tree["acme"], name="A", secret=secret), format="json").json()
    slack = owner.post(
        URL, pager(tree["acme"], name="B", kind="slack", url=slack_url), format="json"
    ).json()

    assert signed["secret"] == secret
    assert (slack["secret"], slack["signed"], slack["url"]) == (
        "",
        False,
        "https://hooks.slack.com/…ZZZZ",
    )
    rotated = owner.post(f"{URL}{slack['id']}/rotate-secret/")
    assert rotated.status_code == 400
    assert error(rotated)["fields"] == {"kind": ["Only webhook channels have a signing secret."]}


# --- the inbox ---------------------------------------------------------------------------------


def inbox_setup(world: World) -> dict[str, Notification]:
    """One unread notification for each home member, in the home organization."""
    return {
        role: Notification.objects.create(
            user=principal.user,
            organization=world.home,
            medium="portal",
            severity="major",
            title=f"[MAJOR] Opened: for {role}",
            body="temperature 91.5 > 80",
            url="/alerts/x/",
        )
        for role, principal in world.members.items()
    }


def mine(attempt: Attempt) -> Notification:
    role = attempt.principal.role if attempt.principal is not None else Role.OWNER
    return attempt.target[role]  # type: ignore[no-any-return]


def notification_json(notification: Notification) -> dict[str, Any]:
    notification.refresh_from_db()
    return {
        "id": str(notification.pk),
        "organization": str(notification.organization_id),
        "event": None,
        "severity": notification.severity,
        "title": notification.title,
        "body": notification.body,
        "url": notification.url,
        "created_at": iso(notification.created_at),
        "read_at": iso(notification.read_at),
    }


def read_state(attempt: Attempt) -> list[tuple[Any, ...]]:
    return sorted(Notification.objects.values_list("id", "read_at"))


@pytest.fixture
def inbox_matrix(session_world) -> Check:
    """Runs an inbox endpoint's matrix (sessions: API keys have no inbox, see below): every
    home member has one unread notification, and no refusal may mark any of them read."""

    def check(**case: Any) -> None:
        defaults: dict[str, Any] = {
            "permission": "alert.view",
            "allowed": VIEWERS,
            "setup": inbox_setup,
            "state": read_state,
        }
        assert_authz_matrix(session_world, Case(**(defaults | case)))

    return check


@pytest.fixture
def inbox(session_world) -> dict[str, Notification]:
    return inbox_setup(session_world)


def test_inbox_list_matrix(inbox_matrix):
    inbox_matrix(
        request=lambda a: Call("get", INBOX),
        expect=answers(
            lambda a: {"next": None, "previous": None, "results": [notification_json(mine(a))]}
        ),
        listing=True,
    )


def test_inbox_retrieve_matrix(inbox_matrix):
    inbox_matrix(
        request=lambda a: Call("get", f"{INBOX}{mine(a).pk}/"),
        expect=answers(lambda a: notification_json(mine(a))),
    )


def test_mark_read_matrix(inbox_matrix):
    def expect(attempt, response):
        notification = mine(attempt)
        assert response.json() == notification_json(notification)
        assert notification.read_at is not None
        others = Notification.objects.exclude(pk=notification.pk)
        assert set(others.values_list("read_at", flat=True)) == {None}

    inbox_matrix(request=lambda a: Call("post", f"{INBOX}{mine(a).pk}/read/"), expect=expect)


def test_mark_all_read_matrix(inbox_matrix):
    def expect(attempt, response):
        assert response.json() == {"marked": 1}
        read = Notification.objects.exclude(read_at=None).values_list("pk", flat=True)
        assert list(read) == [mine(attempt).pk]

    def outsider(attempt, response):
        assert (response.status_code, response.json()) == (200, {"marked": 0})

    inbox_matrix(
        request=lambda a: Call("post", f"{INBOX}read-all/"),
        expect=expect,
        outsider_expect=outsider,
    )


def test_unread_count_matrix(inbox_matrix):
    def outsider(attempt, response):
        assert (response.status_code, response.json()) == (200, {"unread": 0})

    inbox_matrix(
        request=lambda a: Call("get", f"{INBOX}unread-count/"),
        expect=answers(lambda a: {"unread": 1}),
        outsider_expect=outsider,
    )


def test_the_inbox_never_shows_another_persons_notification(session_world, inbox, viewer):
    operator = session_world.members[Role.OPERATOR]

    listed = viewer.client.get(INBOX).json()["results"]
    other = viewer.client.get(f"{INBOX}{inbox[Role.OPERATOR].pk}/")
    marked = viewer.client.post(f"{INBOX}{inbox[Role.OPERATOR].pk}/read/")
    malformed = viewer.client.get(f"{INBOX}not-a-uuid/")

    assert [row["id"] for row in listed] == [str(inbox[Role.VIEWER].pk)]
    assert (other.status_code, marked.status_code, malformed.status_code) == (404, 404, 404)
    assert error(other)["code"] == "not_found"
    inbox[Role.OPERATOR].refresh_from_db()
    assert inbox[Role.OPERATOR].read_at is None
    assert operator.client.get(f"{INBOX}unread-count/").json() == {"unread": 1}


def test_the_inbox_hides_notifications_of_an_organization_the_person_left(tree, inbox, viewer):
    Notification.objects.create(
        user=viewer.user, organization=tree["globex"], medium="portal", title="elsewhere"
    )
    Notification.objects.create(
        user=viewer.user, organization=tree["acme"], medium="email", title="an email record"
    )

    listed = viewer.client.get(INBOX).json()["results"]

    assert [row["id"] for row in listed] == [str(inbox[Role.VIEWER].pk)]


def test_the_inbox_filters_unread_and_pages_with_a_cursor(tree, viewer, django_assert_num_queries):
    rows = [
        Notification.objects.create(
            user=viewer.user, organization=tree["acme"], medium="portal", title=f"n{index}"
        )
        for index in range(5)
    ]
    Notification.objects.filter(pk=rows[0].pk).update(read_at=rows[0].created_at)

    with django_assert_num_queries(4):  # user, MFA requirement, actor, the page: one query
        first = viewer.client.get(INBOX, {"page_size": 2, "unread": "true"}).json()
    second = viewer.client.get(first["next"]).json()
    read = viewer.client.get(INBOX, {"unread": "false"}).json()

    assert [row["title"] for row in first["results"]] == ["n4", "n3"]
    assert [row["title"] for row in second["results"]] == ["n2", "n1"]
    assert [row["title"] for row in read["results"]] == ["n0"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", INBOX),
        ("get", f"{INBOX}unread-count/"),
        ("post", f"{INBOX}read-all/"),
        ("get", PREFERENCES),
        ("put", PREFERENCES),
    ],
)
def test_api_keys_have_no_inbox_and_no_preferences(tree, method, path):
    key = make_principal("api_key", tree["acme"], Role.OWNER)
    audits = AuditLog.objects.count()

    response = getattr(key.client, method)(path, {}, format="json")

    assert response.status_code == 403
    assert error(response)["status"] == 403
    assert AuditLog.objects.count() == audits


# --- preferences -------------------------------------------------------------------------------


@pytest.fixture
def person(tree) -> Principal:
    """A viewer of acme, alone (preferences are per person; no whole world needed)."""
    return make_principal(SESSION, tree["acme"], Role.VIEWER)


def test_preferences_are_the_defaults_until_saved_and_anonymous_gets_401(person):
    anonymous = APIClient().get(PREFERENCES)
    response = person.client.get(PREFERENCES)

    assert (anonymous.status_code, error(anonymous)["status"]) == (401, 401)
    assert response.json() == {
        "portal": True,
        "email": True,
        "min_severity": "warning",
        "quiet_start": None,
        "quiet_end": None,
        "timezone": "UTC",
        "updated_at": None,
    }


@pytest.mark.parametrize("role", ROLES)
def test_every_person_puts_their_own_preferences_and_only_theirs(tree, person, role):
    someone = make_principal(SESSION, tree["acme"], role)
    body = {
        "portal": True,
        "email": False,
        "min_severity": "major",
        "quiet_start": "22:00",
        "quiet_end": "07:00",
        "timezone": "Europe/Paris",
    }

    response = someone.client.put(PREFERENCES, body, format="json")

    saved = NotificationPreference.objects.get(user=someone.user)
    assert response.status_code == 200
    assert response.json() == {
        **body,
        "quiet_start": "22:00:00",
        "quiet_end": "07:00:00",
        "updated_at": iso(saved.updated_at),
    }
    assert (saved.quiet_start, saved.quiet_end, saved.timezone) == (
        time(22),
        time(7),
        "Europe/Paris",
    )
    assert NotificationPreference.objects.filter(user=person.user).exists() is False
    audit = last_audit("notificationpreference.change")
    assert (audit.actor_label, audit.object_id, audit.organization_id) == (
        someone.user.email,
        str(someone.user.pk),
        None,
    )
    assert audit.changes == {
        "email": [True, False],
        "min_severity": ["warning", "major"],
        "quiet_start": [None, "22:00:00"],
        "quiet_end": [None, "07:00:00"],
        "timezone": ["UTC", "Europe/Paris"],
    }


def test_patch_changes_some_preferences_and_put_resets_the_quiet_hours(person):
    NotificationPreference.objects.create(
        user=person.user, quiet_start=time(22), quiet_end=time(7), timezone="Asia/Tokyo"
    )

    patched = person.client.patch(PREFERENCES, {"min_severity": "critical"}, format="json")
    put = person.client.put(
        PREFERENCES,
        {"portal": True, "email": True, "min_severity": "info", "timezone": "UTC"},
        format="json",
    )

    assert (patched.json()["min_severity"], patched.json()["timezone"]) == (
        "critical",
        "Asia/Tokyo",
    )
    assert patched.json()["quiet_start"] == "22:00:00"
    assert (put.json()["quiet_start"], put.json()["quiet_end"]) == (None, None)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        (
            {"quiet_start": "22:00"},
            {"quiet_end": ["Give both the start and the end of the quiet hours, or neither."]},
        ),
        ({"timezone": "Mars/Olympus"}, {"timezone": ["Unknown time zone 'Mars/Olympus'."]}),
        (
            {"quiet_start": "25:00", "quiet_end": "07:00"},
            {
                "quiet_start": [
                    "Time has wrong format. Use one of these formats instead: hh:mm[:ss[.uuuuuu]]."
                ]
            },
        ),
        ({"min_severity": "loud"}, {"min_severity": ['"loud" is not a valid choice.']}),
    ],
)
def test_bad_preferences_get_the_error_envelope_and_change_nothing(person, body, fields):
    response = person.client.patch(PREFERENCES, body, format="json")

    assert response.status_code == 400
    assert error(response)["fields"] == fields
    assert NotificationPreference.objects.filter(user=person.user).exists() is False
