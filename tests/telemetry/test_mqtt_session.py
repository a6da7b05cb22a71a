"""The ingest worker's MQTT subscriber (``apps.telemetry.mqtt_session``): its wire format,
byte for byte, and its behaviour against the real Mosquitto (persistent session, packets that
come with the CONNACK, keepalive, acknowledgements bound to one connection, broker restart)."""

from __future__ import annotations

import secrets
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from apps.telemetry.mqtt_session import (
    ProtocolError,
    SessionConfig,
    Subscriber,
    connect_packet,
    parse,
    pubacks,
    subscribe_packet,
    unsubscribe_packet,
)
from tests.broker_support import MqttBroker, connect_platform

TIMEOUT = 15.0


def config(**overrides: object) -> SessionConfig:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 1883,
        "client_id": "c1",
        "subscriptions": ("$share/g/devices/+/telemetry",),
    }
    values.update(overrides)
    return SessionConfig(**values)  # type: ignore[arg-type]


def publish_packet(topic: str, payload: bytes, packet_id: int = 0, *, v5: bool = False) -> bytes:
    qos = 1 if packet_id else 0
    body = struct.pack(">H", len(topic)) + topic.encode()
    if packet_id:
        body += struct.pack(">H", packet_id)
    if v5:
        body += b"\x02\x01\x01"  # properties: payload format indicator = 1
    body += payload
    length = len(body)
    encoded = bytearray()
    while True:
        length, digit = divmod(length, 128)
        encoded.append(digit | (128 if length else 0))
        if not length:
            break
    return bytes((0x30 | qos << 1,)) + bytes(encoded) + body


# --- the wire format -----------------------------------------------------------------------------


def test_the_connect_packet_of_a_persistent_311_session_with_credentials():
    packet = connect_packet(config(username="u", password="pw", keepalive=30))
    assert packet == (
        b"\x10\x15"  # CONNECT, remaining length 21
        b"\x00\x04MQTT\x04"  # protocol name, level 4 (3.1.1)
        b"\xc0"  # username and password; clean session off
        b"\x00\x1e"  # keepalive 30 s
        b"\x00\x02c1\x00\x01u\x00\x02pw"
    )


def test_the_connect_packet_of_an_mqtt5_session_carries_its_expiry_and_receive_maximum():
    packet = connect_packet(config(version=5, session_expiry=3600, receive_maximum=10_000))
    assert packet == (
        b"\x10\x17\x00\x04MQTT\x05\x00\x00\x1e"
        b"\x08\x11\x00\x00\x0e\x10\x21\x27\x10"  # properties: expiry 3600, receive maximum 10000
        b"\x00\x02c1"
    )


def test_subscribe_and_unsubscribe_packets_ask_for_qos_1():
    topics = ("a/+", "b")
    assert subscribe_packet(config(subscriptions=topics), 7) == (
        b"\x82\x0c\x00\x07\x00\x03a/+\x01\x00\x01b\x01"
    )
    assert subscribe_packet(config(subscriptions=topics, version=5), 7) == (
        b"\x82\x0d\x00\x07\x00\x00\x03a/+\x01\x00\x01b\x01"
    )
    assert unsubscribe_packet(config(subscriptions=topics), 8) == (
        b"\xa2\x0a\x00\x08\x00\x03a/+\x00\x01b"
    )


def test_the_acknowledgements_of_a_batch_are_one_buffer():
    assert pubacks([1, 258, 65535]) == b"\x40\x02\x00\x01\x40\x02\x01\x02\x40\x02\xff\xff"
    assert pubacks([]) == b""


def test_it_parses_every_complete_packet_and_leaves_an_incomplete_one():
    first = publish_packet("devices/a/telemetry", b'{"x":1}', 1)
    second = publish_packet("devices/b/events", b"", 0)
    third = publish_packet("devices/c/heartbeat", b"z" * 300, 65535)  # 2-byte length
    data = first + second + b"\xd0\x00" + third
    deliveries, control, used = parse(data[:-5], 4, 12.5, 3)
    assert deliveries == [
        ("devices/a/telemetry", b'{"x":1}', 1, 1, 12.5, 3),
        ("devices/b/events", b"", 0, 0, 12.5, 3),
    ]
    assert control == [(13, b"")]  # PINGRESP
    assert used == len(first) + len(second) + 2
    deliveries, control, used = parse(data[used:], 4, 13.0, 3)
    assert deliveries == [("devices/c/heartbeat", b"z" * 300, 65535, 1, 13.0, 3)]
    assert (control, used) == ([], len(third))


def test_it_skips_mqtt5_properties_and_refuses_a_malformed_length():
    packet = publish_packet("devices/a/telemetry", b"{}", 9, v5=True)
    assert parse(packet, 5, 1.0, 0)[0] == [("devices/a/telemetry", b"{}", 9, 1, 1.0, 0)]
    with pytest.raises(ProtocolError, match="malformed remaining length"):
        parse(b"\x30\xff\xff\xff\xff\x01", 4, 1.0, 0)


# --- against Mosquitto -------------------------------------------------------------------------


class Collector:
    def __init__(self) -> None:
        self.deliveries: list[tuple[str, bytes, int, int, float, int]] = []
        self.connects: list[bool] = []
        self.disconnects: list[str] = []
        self.subacks: list[bytes] = []
        self.changed = threading.Condition()

    def wait(self, predicate: object, what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        with self.changed:
            while not predicate():  # type: ignore[operator]
                left = deadline - time.monotonic()
                assert left > 0, f"timed out waiting for {what}: {vars(self)}"
                self.changed.wait(left)

    def note(self, name: str, value: object) -> None:
        with self.changed:
            getattr(self, name).append(value)
            self.changed.notify_all()


def start(
    broker: MqttBroker, client_id: str, *, keepalive: int = 30, version: int = 4, topic: str = ""
):
    seen = Collector()
    session = Subscriber(
        config(
            port=broker.platform_port,
            client_id=client_id,
            subscriptions=(topic or f"$share/{client_id}/devices/+/telemetry",),
            username=broker.platform_username,
            password=broker.platform_password,
            keepalive=keepalive,
            version=version,
        ),
        on_messages=lambda batch: [seen.note("deliveries", item) for item in batch],
        on_disconnect=lambda reason: seen.note("disconnects", reason),
        on_subscribe=lambda codes: seen.note("subacks", codes),
    )

    def connected(present: bool) -> None:
        seen.note("connects", present)
        session.subscribe()

    session.on_connect = connected
    session.start()
    seen.wait(lambda: seen.subacks, "the SUBACK")
    return session, seen


@pytest.fixture
def publisher(mqtt_broker: MqttBroker) -> Iterator[object]:
    session = connect_platform(mqtt_broker)
    yield session
    session.close()


@pytest.mark.parametrize("version", [4, 5])
def test_queued_messages_that_come_with_the_connack_are_delivered_once_acknowledged(
    mqtt_broker, publisher, version
):
    client_id = f"wire-{secrets.token_hex(4)}"
    session, seen = start(mqtt_broker, client_id, version=version)
    assert (seen.connects, seen.subacks) == ([False], [b"\x01"])
    session.stop()
    for number in range(50):  # queued in the session while it is away
        publisher.publish(f"devices/d{number}/telemetry", b"%d" % number, qos=1)

    session, seen = start(mqtt_broker, client_id, version=version)
    seen.wait(lambda: len(seen.deliveries) == 50, "the 50 queued messages")
    assert seen.connects == [True]
    assert sorted(int(item[1]) for item in seen.deliveries) == list(range(50))
    generation = seen.deliveries[0][5]
    assert session.acknowledge([item[2] for item in seen.deliveries], generation) is True
    session.stop()

    session, seen = start(mqtt_broker, client_id, version=version)
    time.sleep(0.5)  # nothing more comes: every message was acknowledged
    assert seen.deliveries == []
    session.stop()


def test_unacknowledged_messages_come_again_and_a_stale_acknowledgement_sends_nothing(
    mqtt_broker, publisher
):
    client_id = f"wire-{secrets.token_hex(4)}"
    session, seen = start(mqtt_broker, client_id)
    publisher.publish("devices/d1/telemetry", b"one", qos=1)
    seen.wait(lambda: len(seen.deliveries) == 1, "the message")
    first = seen.deliveries[0]
    mqtt_broker.restart()  # the connection drops; the session is on disk
    seen.wait(lambda: len(seen.connects) == 2 and len(seen.deliveries) == 2, "the redelivery")
    assert seen.connects == [False, True]
    assert len(seen.disconnects) == 1
    again = seen.deliveries[1]
    assert (again[0], again[1], again[5]) == (first[0], first[1], first[5] + 1)
    assert session.acknowledge([first[2]], first[5]) is False  # another connection's id
    assert session.acknowledge([again[2]], again[5]) is True
    session.stop()
    session, seen = start(mqtt_broker, client_id)
    time.sleep(0.5)
    assert seen.deliveries == []
    session.stop()


def test_an_idle_session_stays_connected_through_its_keepalive(mqtt_broker, publisher):
    session, seen = start(mqtt_broker, f"wire-{secrets.token_hex(4)}", keepalive=2)
    time.sleep(5)  # Mosquitto drops a client silent for 1.5 keepalive periods (3 s)
    publisher.publish("devices/d1/telemetry", b"still here", qos=1)
    seen.wait(lambda: seen.deliveries, "the message")
    assert (seen.connects, seen.disconnects) == ([False], [])
    session.stop()


@pytest.mark.parametrize(
    "shared",
    [
        False,
        pytest.param(
            True,
            marks=pytest.mark.xfail(
                strict=True,
                reason="Mosquitto 2.0.11 does not restore the shared subscriptions of offline "
                "sessions after a restart (docs/operations.md, Broker restarts)",
            ),
        ),
    ],
)
def test_the_subscription_of_an_offline_session_survives_a_broker_restart(
    mqtt_broker, publisher, shared
):
    client_id = f"wire-{secrets.token_hex(4)}"
    topic = "" if shared else f"devices/+/telemetry/{client_id}"
    session, seen = start(mqtt_broker, client_id, topic=topic)
    session.stop()  # offline before the restart
    mqtt_broker.restart()
    late = connect_platform(mqtt_broker)
    try:
        late.publish(
            f"devices/d1/telemetry{'' if shared else '/' + client_id}", b"after the restart"
        )
    finally:
        late.close()
    session, seen = start(mqtt_broker, client_id, topic=topic)
    seen.wait(lambda: seen.deliveries, "the message queued while offline")
    assert [item[1] for item in seen.deliveries] == [b"after the restart"]
    session.acknowledge([seen.deliveries[0][2]], seen.deliveries[0][5])
    session.stop()
