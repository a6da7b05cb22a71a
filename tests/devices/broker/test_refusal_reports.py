"""What the broker refuses is reported, counted once and audited (apps/devices/refusals.py):
the device listeners' ACL plugin reports refused publishes, subscriptions and oversized
messages; the broker's log reports failed handshakes and wrong credentials. Real Mosquitto with
the generated configuration, real TLS; the platform reads both as the connectivity worker does.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.conf import settings

from apps.core.models import AuditLog
from apps.devices import refusals
from apps.devices.models import BrokerRefusal
from tests.broker_support import ConnectionRefused, MqttSession, connect, connect_token

from .conftest import Fleet
from .test_refusals import rogue_certificate

TIMEOUT = 10.0


def reports_of(watcher: MqttSession, expected: int) -> list[tuple[str, bytes]]:
    """Wait until ``expected`` refusals can be parsed from what the watcher received."""
    received: list[tuple[str, bytes]] = []
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        received += [(m.topic, m.payload) for m in watcher.collect(0.2)]
        if len(refusals.parse(received)) >= expected:
            return received
    raise AssertionError(f"{expected} refusal(s) never arrived: {received}")


def watch(fleet: Fleet) -> MqttSession:
    watcher = fleet.platform()
    assert watcher.subscribe(refusals.REPORTS_TOPIC) == [1]
    assert watcher.subscribe(refusals.LOG_TOPIC) == [1]
    return watcher


def stored() -> list[tuple[str, str, int, str, str]]:
    return sorted(
        BrokerRefusal.objects.values_list("device__serial", "reason", "count", "topic", "detail")
    )


def test_a_devices_forbidden_publishes_subscriptions_and_oversized_messages_are_counted_and_audited(
    fleet: Fleet,
) -> None:
    watcher = watch(fleet)
    b = fleet.device("b")
    for _ in range(3):
        b.publish(fleet.topic("a", "telemetry"), b"sneaky")
    assert b.subscribe("#") == [128]
    b.publish(fleet.topic("b", "telemetry"), b"y" * (settings.MQTT_MAX_MESSAGE_BYTES + 1))
    time.sleep(1.1)  # repeats within a second are reported with the listener's next activity
    b.publish(fleet.topic("b", "heartbeat"), b"{}")

    # the first forbidden publish is reported at once, its two repeats a second later
    messages = reports_of(watcher, 4)
    assert refusals.record(refusals.parse(messages)) == len(refusals.parse(messages))
    a_telemetry = fleet.topic("a", "telemetry")
    rows = stored()
    assert {(serial, reason, topic) for serial, reason, _, topic, _ in rows} == {
        ("B", "acl_publish", a_telemetry),
        ("B", "acl_subscribe", "#"),
        ("B", "oversized", fleet.topic("b", "telemetry")),
    }
    by_reason: dict[str, int] = {}
    for _, reason, count, _, _ in rows:
        by_reason[reason] = by_reason.get(reason, 0) + count
    assert by_reason == {"acl_publish": 3, "acl_subscribe": 1, "oversized": 1}
    oversized = BrokerRefusal.objects.get(reason="oversized")
    assert oversized.detail == f"{settings.MQTT_MAX_MESSAGE_BYTES + 1} bytes"
    assert oversized.organization_id == fleet.b.organization_id
    assert b.connected

    audit = AuditLog.objects.filter(action="broker.refused")
    assert audit.count() == len(rows)
    assert set(audit.values_list("actor_kind", "actor_device_id", "organization_id")) == {
        ("device", fleet.b.pk, fleet.b.organization_id)
    }
    assert refusals.record(refusals.parse(messages)) == 0  # delivered again: counted once
    assert stored() == rows
    assert audit.count() == len(rows)


def test_failed_handshakes_and_wrong_credentials_are_counted_from_the_brokers_log(
    fleet: Fleet, tmp_path: Path
) -> None:
    watcher = watch(fleet)
    certfile, keyfile = rogue_certificate(str(fleet.a.pk), tmp_path)
    with pytest.raises(ConnectionRefused):
        connect(
            fleet.broker,
            port=fleet.broker.device_port,
            certfile=certfile,
            keyfile=keyfile,
            client_id=str(fleet.a.pk),
        )
    with pytest.raises(ConnectionRefused, match="Not authorized"):
        connect_token(fleet.broker, str(fleet.t.pk), fleet.t_token[:-1] + "x")

    parsed = refusals.parse(reports_of(watcher, 2))
    assert sorted((r.reason, r.address, r.detail) for r in parsed) == [
        ("not_authorised", "", ""),
        ("tls_handshake", "127.0.0.1", "certificate verify failed"),
    ]
    assert refusals.record(parsed) == 2
    assert refusals.record(parsed) == 0
    audit = AuditLog.objects.filter(action="broker.refused").order_by("object_repr")
    assert [(a.actor_kind, a.organization_id, a.changes["reason"]) for a in audit] == [
        ("system", None, "tls_handshake"),
        ("system", None, "not_authorised"),
    ]


def test_the_same_log_line_twice_in_a_batch_counts_twice_and_redelivery_counts_nothing() -> None:
    line = b"2026-11-30T10:00:00: Client <unknown> disconnected, not authorised."
    other = b"2026-11-30T10:00:00: New connection from 10.0.0.9:5000 on port 8884."
    batch = [("$SYS/broker/log/N", line), ("$SYS/broker/log/N", other), ("$SYS/broker/log/N", line)]
    first = refusals.parse(batch)
    assert [r.reason for r in first] == ["not_authorised", "not_authorised"]
    assert len({r.report_id for r in first}) == 2
    assert [r.report_id for r in refusals.parse(batch)] == [r.report_id for r in first]


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b'{"id": "1.2.3", "access": "write"}',
        b'{"id": "1.2.3", "access": "unsubscribe", "reason": "acl", "count": 1}',
        b'{"access": "write", "reason": "acl", "count": 1}',
    ],
)
def test_malformed_plugin_reports_are_skipped(payload: bytes) -> None:
    assert refusals.parse([(refusals.REPORTS_TOPIC, payload)]) == []


def test_an_openssl_error_and_its_client_connection_line_are_one_refusal_with_its_address() -> None:
    log = [
        b"2026-11-30T10:00:00: New connection from 10.0.0.7:5000 on port 8883.",
        b"2026-11-30T10:00:00: OpenSSL Error[0]: error:0A000086:SSL routines::certificate "
        b"verify failed",
        b"2026-11-30T10:00:00: OpenSSL Error[1]: error:0A000086:SSL routines::something else",
        b"2026-11-30T10:00:00: Client connection from 10.0.0.8 failed: error:0A000086:SSL "
        b"routines::certificate verify failed.",
        b"2026-11-30T10:00:01: Client connection from 10.0.0.9 failed: error:0A000126:SSL "
        b"routines::unexpected eof while reading.",
        b"2026-11-30T10:00:02: New connection from 10.0.0.10:5001 on port 8883.",
        b"2026-11-30T10:00:02: OpenSSL Error[0]: error:0A0000C7:SSL routines::peer did not "
        b"return a certificate",
    ]
    parsed = refusals.parse([("$SYS/broker/log/E", line) for line in log])
    assert [(r.reason, r.address, r.detail) for r in parsed] == [
        ("tls_handshake", "10.0.0.8", "certificate verify failed"),
        ("tls_handshake", "10.0.0.10", "peer did not return a certificate"),
    ]
