"""The downlink outbox (``apps.devices.downlinks``) against the real Mosquitto: published after
commit only, in order, at least once, superseded and expired messages never sent, a broker
outage survived."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.db import transaction
from django.utils import timezone

from apps.devices import downlinks
from apps.devices.models import Downlink, DownlinkState
from tests.broker_support import MqttBroker, connect_platform
from tests.devices.registry_support import make_device, make_version

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker_url(settings, mqtt_broker: MqttBroker) -> MqttBroker:
    user, password = quote(mqtt_broker.platform_username), quote(mqtt_broker.platform_password)
    settings.MQTT_URL = f"mqtt://{user}:{password}@127.0.0.1:{mqtt_broker.platform_port}"
    return mqtt_broker


@pytest.fixture
def device(tree):
    return make_device(tree["acme"], make_version(tree["acme"]), "DL-0001")


@pytest.fixture
def published() -> Iterator[list[str]]:
    seen: list[str] = []
    kind = f"test-{secrets.token_hex(4)}"
    downlinks.on_published(kind, seen.extend)
    seen.append(kind)  # the first item names the ref type
    yield seen
    downlinks._CALLBACKS.pop(kind, None)


def outgoing(device, topic: str, payload: bytes, **options) -> downlinks.Outgoing:
    return downlinks.Outgoing(
        device_id=device.pk,
        organization_id=device.organization_id,
        topic=topic,
        payload=payload,
        **options,
    )


def listen(broker: MqttBroker, device):
    session = connect_platform(broker)
    session.subscribe(f"devices/{device.pk}/#")
    return session


def states() -> list[tuple[str, bytes, str]]:
    return [
        (row.topic.split("/", 2)[2], bytes(row.payload), row.state)
        for row in Downlink.objects.order_by("id")
    ]


def test_messages_are_published_in_order_after_commit_only(broker_url, device, published):
    ref_type = published[0]
    listener = listen(broker_url, device)
    try:
        with transaction.atomic():
            downlinks.enqueue([outgoing(device, "commands/x", b"rolled back")])
            transaction.set_rollback(True)
        with transaction.atomic():
            downlinks.enqueue(
                [
                    outgoing(device, "commands/a", b"1", ref_type=ref_type, ref_id="a"),
                    outgoing(device, "commands/b", b"2", ref_type=ref_type, ref_id="b"),
                ]
            )
        assert downlinks.publish_pending() == 2
        got = listener.collect(1.0)
    finally:
        listener.close()
    assert [(m.topic.rsplit("/", 1)[1], m.payload) for m in got] == [("a", b"1"), ("b", b"2")]
    assert states() == [("commands/a", b"1", "published"), ("commands/b", b"2", "published")]
    assert published[1:] == ["a", "b"]
    assert downlinks.publish_pending() == 0  # nothing twice


def test_a_superseding_message_replaces_the_unpublished_older_one(broker_url, device):
    with transaction.atomic():
        downlinks.enqueue([outgoing(device, "config/desired", b"v1", retain=True, supersede=True)])
    with transaction.atomic():
        downlinks.enqueue(
            [
                outgoing(device, "config/desired", b"v2", retain=True, supersede=True),
                outgoing(device, "config/desired", b"v3", retain=True, supersede=True),
            ]
        )
    assert downlinks.publish_pending() == 1
    assert states() == [
        ("config/desired", b"v1", "superseded"),
        ("config/desired", b"v3", "published"),
    ]
    late = listen(broker_url, device)  # a retained message reaches a later subscriber
    try:
        got = late.collect(1.0)
    finally:
        late.close()
    assert [(m.payload, m.retain) for m in got] == [(b"v3", True)]
    broker_url.clear_retained()


def test_an_expired_message_is_never_published(broker_url, device):
    past = timezone.now() - timedelta(seconds=1)
    with transaction.atomic():
        downlinks.enqueue([outgoing(device, "commands/old", b"late", expires_at=past)])
    assert downlinks.publish_pending() == 0
    assert states() == [("commands/old", b"late", "expired")]


def test_messages_wait_out_a_broker_outage(broker_url, device):
    with transaction.atomic():
        downlinks.enqueue([outgoing(device, "commands/a", b"1")])
    broker_url.stop()
    try:
        assert downlinks.publish_pending() == 0
    finally:
        broker_url.start()
    row = Downlink.objects.get()
    assert (row.state, row.attempts) == (DownlinkState.PENDING, 1)
    assert row.last_error.startswith("publishing failed")
    assert downlinks.publish_pending() == 0  # still claimed by the failed attempt
    Downlink.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert downlinks.publish_pending() == 1
    assert states() == [("commands/a", b"1", "published")]
