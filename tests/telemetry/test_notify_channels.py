"""Channel deliveries end to end against a local HTTP server: Standard Webhooks signatures
verified with the ``standardwebhooks`` library, the Slack-compatible message, failures that
retry with backoff into a dead letter and back through redelivery, secret rotation, and the
outbound URL rules (SSRF)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from apps.core import events
from apps.core.actors import SYSTEM
from apps.core.models import EventDelivery
from apps.telemetry.models import NotificationChannel
from apps.telemetry.notify import deliver, secrets, services
from apps.telemetry.notify.fanout import CONSUMER, channel_consumer

from .notify_support import ALERT_ID, RULE_ID, delivery, emit_alert, endpoint, run

pytestmark = pytest.mark.django_db

DAY = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def make_channel(organization, url: str, kind: str = "webhook", **fields) -> services.IssuedChannel:
    fields.setdefault("name", f"{kind} channel")
    return services.channel_create(
        actor=SYSTEM, organization=organization, kind=kind, url=url, **fields
    )


def fan_out(organization, **overrides):
    event = emit_alert(organization, at=DAY, **overrides)
    run(event, CONSUMER)
    return event


def test_a_webhook_is_posted_once_with_standard_webhooks_headers_that_verify(tree) -> None:
    with endpoint() as hook:
        issued = make_channel(tree["acme"], hook.url)
        hook.secret = issued.secret
        event = fan_out(tree["retail"])
        consumer = channel_consumer(issued.channel.pk)

        assert run(event, consumer) == "delivered"

    [request] = hook.received
    assert request.verified is True
    assert request.path == "/hooks/fleetops"
    assert request.headers["webhook-id"] == str(event.pk)
    assert abs(int(request.headers["webhook-timestamp"]) - timezone.now().timestamp()) < 30
    assert request.headers["webhook-signature"].startswith("v1,")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "Fleetops-Notifications/1.0"
    assert request.json() == {
        "type": "alert.opened",
        "timestamp": DAY.isoformat(),
        "data": {
            "alert_id": str(ALERT_ID),
            "rule_id": str(RULE_ID),
            "rule_name": "Overheating",
            "device_id": None,
            "device_serial": "SN-0042",
            "severity": "major",
            "message": "temperature 91.5 > 80",
            "status": "open",
            "opened_at": "2026-03-01T23:30:00+00:00",
            "by": None,
            "organization_id": str(tree["retail"].pk),
        },
    }
    assert issued.secret.startswith("whsec_") and len(issued.secret) == 6 + 44
    stored = NotificationChannel.objects.get(pk=issued.channel.pk).secret_encrypted
    assert issued.secret.encode() not in bytes(stored)
    assert secrets.decrypt(stored) == issued.secret


def test_a_signature_made_with_another_secret_does_not_verify(tree) -> None:
    with endpoint() as hook:
        issued = make_channel(tree["acme"], hook.url)
        hook.secret = secrets.generate()  # the receiver holds the wrong secret
        event = fan_out(tree["retail"])

        assert run(event, channel_consumer(issued.channel.pk)) == "pending"

    assert [request.verified for request in hook.received] == [False]
    assert delivery(event, channel_consumer(issued.channel.pk)).last_error == (
        "ChannelDeliveryError: HTTP 401 from the endpoint: ok"
    )


def test_a_slack_channel_gets_text_and_blocks(tree, settings) -> None:
    settings.SITE_URL = "https://fleet.example.com"
    with endpoint() as slack:
        issued = make_channel(tree["acme"], slack.url, kind="slack")
        event = fan_out(
            tree["retail"],
            severity="critical",
            message="door <open> & alarm",
            device_serial="SN-<1>",
        )

        assert run(event, channel_consumer(issued.channel.pk)) == "delivered"

    assert issued.secret == ""
    [request] = slack.received
    assert "webhook-signature" not in request.headers
    assert request.json() == {
        "text": "[CRITICAL] Opened: Overheating on SN-&lt;1&gt;: door &lt;open&gt; &amp; alarm",
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": ":red_circle: *[CRITICAL] Opened: Overheating on SN-&lt;1&gt;*",
                },
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": "door &lt;open&gt; &amp; alarm"},
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*Severity*\ncritical"},
                    {"type": "mrkdwn", "text": "*Status*\nopen"},
                    {"type": "mrkdwn", "text": "*Device*\nSN-&lt;1&gt;"},
                    {"type": "mrkdwn", "text": "*Rule*\nOverheating"},
                ],
            },
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open in Fleetops"},
                        "url": f"https://fleet.example.com/alerts/{ALERT_ID}/",
                    }
                ],
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": "Opened at 2026-03-01T23:30:00+00:00"}],
            },
        ],
    }


def test_a_failing_endpoint_retries_with_backoff_dies_and_redelivers(tree, settings) -> None:
    settings.OUTBOX_MAX_ATTEMPTS = 3
    with endpoint(status=503) as hook:
        issued = make_channel(tree["acme"], hook.url)
        hook.secret = issued.secret
        event = fan_out(tree["retail"])
        consumer = channel_consumer(issued.channel.pk)

        outcomes, waits = [], []
        for _ in range(3):
            started = timezone.now()
            outcomes.append(run(event, consumer))
            waits.append((delivery(event, consumer).next_attempt_at - started).total_seconds())
        dead = delivery(event, consumer)

        assert outcomes == ["pending", "pending", "dead"]
        assert [base <= w <= base * 1.25 + 1 for w, base in zip(waits, (2, 4, 8), strict=True)] == [
            True,
            True,
            True,
        ]
        assert (dead.status, dead.attempts, dead.last_error) == (
            "dead",
            3,
            "ChannelDeliveryError: HTTP 503 from the endpoint: ok",
        )
        assert events.claim_due() == []  # a dead letter is never picked up again by itself

        hook.status = 200
        assert events.redeliver(actor=SYSTEM, delivery_ids=[dead.pk]) == 1
        assert run(event, consumer) == "delivered"

    assert [request.verified for request in hook.received] == [True] * 4
    assert {request.headers["webhook-id"] for request in hook.received} == {str(event.pk)}


def test_a_timeout_fails_the_delivery(tree, monkeypatch) -> None:
    monkeypatch.setattr(deliver, "TIMEOUT", httpx.Timeout(0.3))
    with endpoint() as hook:
        hook.delay = 1.0
        issued = make_channel(tree["acme"], hook.url)
        event = fan_out(tree["retail"])

        assert run(event, channel_consumer(issued.channel.pk)) == "pending"

    assert delivery(event, channel_consumer(issued.channel.pk)).last_error == (
        "ReadTimeout: timed out"
    )


def test_a_redirect_is_not_followed(tree) -> None:
    with endpoint(status=302) as hook:
        issued = make_channel(tree["acme"], hook.url)
        event = fan_out(tree["retail"])

        assert run(event, channel_consumer(issued.channel.pk)) == "pending"

    assert len(hook.received) == 1
    assert delivery(event, channel_consumer(issued.channel.pk)).last_error.startswith(
        "ChannelDeliveryError: HTTP 302"
    )


def test_a_deleted_or_disabled_channel_gets_nothing_and_its_delivery_ends(tree) -> None:
    with endpoint() as hook:
        deleted = make_channel(tree["acme"], hook.url, name="deleted").channel
        disabled = make_channel(tree["acme"], hook.url, name="disabled").channel
        event = fan_out(tree["retail"])
        services.channel_delete(actor=SYSTEM, channel=deleted)
        services.channel_update(actor=SYSTEM, channel=disabled, enabled=False)

        assert run(event, channel_consumer(deleted.pk)) == "delivered"
        assert run(event, channel_consumer(disabled.pk)) == "delivered"

    assert hook.received == []


def test_after_a_rotation_both_secrets_sign_until_the_grace_period_ends(tree) -> None:
    with endpoint() as hook:
        first = make_channel(tree["acme"], hook.url)
        second = services.channel_rotate_secret(actor=SYSTEM, channel=first.channel)
        event = fan_out(tree["retail"])
        consumer = channel_consumer(first.channel.pk)

        hook.secret = first.secret  # a receiver that has not switched yet
        assert run(event, consumer) == "delivered"
        hook.secret = second.secret  # one that has
        EventDelivery.objects.filter(event=event, consumer=consumer).update(status="pending")
        assert run(event, consumer) == "delivered"
        NotificationChannel.objects.filter(pk=first.channel.pk).update(
            previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
        )
        hook.secret = first.secret  # too late for the old one
        EventDelivery.objects.filter(event=event, consumer=consumer).update(status="pending")
        assert run(event, consumer) == "pending"

    assert second.secret != first.secret
    assert [len(r.headers["webhook-signature"].split(" ")) for r in hook.received] == [2, 2, 1]
    assert [r.verified for r in hook.received] == [True, True, False]


def test_a_test_message_goes_through_the_outbox_even_to_a_disabled_channel(tree) -> None:
    with endpoint() as hook:
        issued = make_channel(tree["acme"], hook.url, enabled=False)
        hook.secret = issued.secret
        event = services.channel_send_test(actor=SYSTEM, channel=issued.channel)

        assert delivery(event, channel_consumer(issued.channel.pk)).status == "pending"
        assert run(event, channel_consumer(issued.channel.pk)) == "delivered"

    [request] = hook.received
    assert request.verified is True
    assert request.json() == {
        "type": "notification.test",
        "timestamp": event.created_at.isoformat(),
        "data": {
            "channel": "webhook channel",
            "channel_id": str(issued.channel.pk),
            "by": "system",
            "organization_id": str(tree["acme"].pk),
        },
    }


def test_webhook_verification_example_from_the_docs_works(tree) -> None:
    """docs/notifications.md shows receivers this exact check."""
    with endpoint() as hook:
        issued = make_channel(tree["acme"], hook.url)
        event = fan_out(tree["retail"])
        run(event, channel_consumer(issued.channel.pk))

    [request] = hook.received
    payload = Webhook(issued.secret).verify(request.body, request.headers)
    assert payload["type"] == "alert.opened"


# --- outbound URLs (SSRF) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/hook", "Only http and https URLs are allowed."),
        ("file:///etc/passwd", "Only http and https URLs are allowed."),
        ("https://user:pw@example.com/hook", "Credentials in the URL are not allowed."),
        ("https://example.com:99999/hook", "The URL's port is not valid."),
        ("http:///nohost", "The URL has no host."),
    ],
)
def test_channel_urls_must_be_http_or_https(tree, url, message) -> None:
    with pytest.raises(ValidationError) as error:
        make_channel(tree["acme"], url)

    assert error.value.message_dict == {"url": [message]}
    assert NotificationChannel.objects.count() == 0


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1:8080/hook", "127.0.0.1"),
        ("http://localhost/hook", "127.0.0.1"),
        ("http://10.1.2.3/hook", "10.1.2.3"),
        ("http://192.168.0.10/hook", "192.168.0.10"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254"),
        ("http://100.64.0.1/hook", "100.64.0.1"),
        ("http://[::1]/hook", "::1"),
        ("http://[::ffff:10.0.0.1]/hook", "::ffff:10.0.0.1"),
        ("http://0.0.0.0/hook", "0.0.0.0"),
    ],
)
def test_private_addresses_are_refused_unless_allowed(tree, settings, url, address) -> None:
    settings.NOTIFY_ALLOW_PRIVATE_ADDRESSES = False

    with pytest.raises(ValidationError) as error:
        make_channel(tree["acme"], url)

    [text] = error.value.message_dict["url"]
    assert text.endswith(f"resolves to a private or reserved address ({address}).")


def test_a_public_address_is_accepted_and_debug_alone_allows_private_ones(tree, settings) -> None:
    settings.NOTIFY_ALLOW_PRIVATE_ADDRESSES = False
    assert make_channel(tree["acme"], "https://93.184.215.14/hook", name="public").channel
    settings.NOTIFY_ALLOW_PRIVATE_ADDRESSES = None
    settings.DEBUG = True
    assert make_channel(tree["acme"], "http://127.0.0.1/hook", name="debug").channel
    settings.DEBUG = False
    with pytest.raises(ValidationError):
        make_channel(tree["acme"], "http://127.0.0.1/hook", name="production")


def test_the_destination_is_checked_again_before_each_delivery(tree, settings) -> None:
    with endpoint() as hook:
        issued = make_channel(tree["acme"], hook.url)
        event = fan_out(tree["retail"])
        settings.NOTIFY_ALLOW_PRIVATE_ADDRESSES = False

        assert run(event, channel_consumer(issued.channel.pk)) == "pending"

    assert hook.received == []
    assert delivery(event, channel_consumer(issued.channel.pk)).last_error == (
        "UnsafeURL: The host 127.0.0.1 resolves to a private or reserved address (127.0.0.1)."
    )


def test_the_channels_body_is_the_exact_bytes_signed(tree) -> None:
    with endpoint() as hook:
        issued = make_channel(tree["acme"], hook.url)
        event = fan_out(tree["retail"])
        run(event, channel_consumer(issued.channel.pk))

    [request] = hook.received
    assert (
        request.body == json.dumps(request.json(), separators=(",", ":"), sort_keys=True).encode()
    )
