"""Builders shared by the notification tests (no tests here): alert events as H3 emits them,
running one outbox delivery by hand, and a local HTTP endpoint that verifies Standard
Webhooks signatures with the ``standardwebhooks`` library."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from apps.accounts.models import Organization
from apps.core import events
from apps.core.models import DeliveryStatus, Event, EventDelivery

ALERT_ID = uuid.UUID("0190f2a4-0000-7000-8000-00000000a1e7")
RULE_ID = uuid.UUID("0190f2a4-0000-7000-8000-0000000001e1")


def alert_payload(**overrides: Any) -> dict[str, Any]:
    """The payload contract of alert.opened / acknowledged / resolved."""
    payload: dict[str, Any] = {
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
    }
    payload.update(overrides)
    return payload


def emit_alert(
    organization: Organization,
    event_type: str = "alert.opened",
    *,
    at: datetime | None = None,
    **overrides: Any,
) -> Event:
    """Emit an alert event as H3 does; ``at`` sets the event's time (quiet hours use it)."""
    event = events.emit(
        event_type, organization_id=organization.pk, payload=alert_payload(**overrides)
    )
    if at is not None:
        Event.objects.filter(pk=event.pk).update(created_at=at)
        event.refresh_from_db()
    return event


def run(event: Event, consumer: str) -> DeliveryStatus | None:
    """Run the delivery of ``event`` to ``consumer`` now, through the outbox's own ``deliver``
    (lease, handler in its transaction, outcome recorded), whatever else is due."""
    delivery = EventDelivery.objects.get(event=event, consumer=consumer)
    until = timezone.now() + timedelta(seconds=60)
    EventDelivery.objects.filter(pk=delivery.pk).update(
        lease_until=until, next_attempt_at=timezone.now()
    )
    return events.deliver(events.Lease(delivery_id=delivery.pk, until=until))


def delivery(event: Event, consumer: str) -> EventDelivery:
    return EventDelivery.objects.get(event=event, consumer=consumer)


def consumers_of(event: Event) -> list[str]:
    return sorted(EventDelivery.objects.filter(event=event).values_list("consumer", flat=True))


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Endpoint:
    """A local HTTP server on a free 127.0.0.1 port. With a ``secret`` it verifies every
    request's Standard Webhooks signature (401 when it does not verify), then answers
    ``status`` (changeable while it runs)."""

    url: str
    secret: str = ""
    status: int = 204
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)


@contextmanager
def endpoint(secret: str = "", status: int = 204) -> Iterator[Endpoint]:
    state = Endpoint(url="", secret=secret, status=status)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {key.lower(): value for key, value in self.headers.items()}
            verified = False
            if state.secret:
                try:
                    Webhook(state.secret).verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
            state.received.append(Received(self.path, headers, body, verified))
            if state.delay:
                threading.Event().wait(state.delay)
            code = 401 if state.secret and not verified else state.status
            self.send_response(code)
            if code in (301, 302):
                self.send_header("location", "http://127.0.0.1:9/elsewhere")
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/fleetops"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
