"""What a notification says: the portal link, the webhook body and the Slack message.

The webhook body follows the Standard Webhooks payload shape (``type``, ``timestamp``,
``data``); ``data`` is the event's payload as emitted, plus its organization.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.urls import NoReverseMatch, reverse

from apps.core.models import Event

from ..choices import ChannelKind
from .policy import TEST_EVENT, AlertNotice

SEVERITY_MARKS = {
    "critical": ":red_circle:",
    "major": ":large_orange_circle:",
    "minor": ":large_yellow_circle:",
    "warning": ":warning:",
    "info": ":information_source:",
}
TEST_MESSAGE = "This is a test notification from Fleetops: the channel works."


def alert_path(organization_id: uuid.UUID, notice: AlertNotice) -> str:
    """The portal page of the alert; its device's page while alerts have no page of their own."""
    candidates: list[tuple[str, dict[str, Any]]] = []
    if notice.alert_id:
        candidates.append(("alerts:detail", {"alert_id": notice.alert_id}))
    device_id = notice.device_uuid()
    if device_id is not None:
        candidates.append(
            ("fleet:device", {"organization_id": organization_id, "device_id": device_id})
        )
    for name, kwargs in candidates:
        try:
            return reverse(name, kwargs=kwargs)
        except NoReverseMatch:
            continue
    return ""


def absolute(path: str) -> str:
    return f"{settings.SITE_URL.rstrip('/')}{path}" if path else ""


def webhook_body(event: Event) -> bytes:
    """The exact bytes POSTed (and signed): compact JSON, keys in a stable order."""
    data = {**event.payload, "organization_id": _text(event.organization_id)}
    body = {"type": event.type, "timestamp": event.created_at.isoformat(), "data": data}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None


def slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters (&, <, >) as entities, so nothing is a link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(event: Event) -> bytes:
    message = _slack_test(event) if event.type == TEST_EVENT else _slack_alert(event)
    return json.dumps(message, separators=(",", ":")).encode()


def _slack_test(event: Event) -> dict[str, Any]:
    by = str(event.payload.get("by") or "")
    context = f"Sent by {slack_escape(by)}" if by else "Sent from Fleetops"
    return {
        "text": TEST_MESSAGE,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": TEST_MESSAGE}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


def _slack_alert(event: Event) -> dict[str, Any]:
    notice = AlertNotice.from_event(event.type, event.payload)
    mark = SEVERITY_MARKS.get(notice.severity, "")
    blocks: list[dict[str, Any]] = [_mrkdwn(f"{mark} *{slack_escape(notice.title)}*".strip())]
    if notice.message:
        blocks.append(_mrkdwn(slack_escape(notice.message)))
    facts = {
        "Severity": notice.severity,
        "Status": notice.status,
        "Device": notice.device_serial or "fleet",
        "Rule": notice.rule_name,
    }
    blocks.append(
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{name}*\n{slack_escape(value)[:1900]}"}
                for name, value in facts.items()
            ],
        }
    )
    link = absolute(alert_path(event.organization_id, notice)) if event.organization_id else ""
    if link:
        button = {"type": "button", "text": {"type": "plain_text", "text": "Open in Fleetops"}}
        blocks.append({"type": "actions", "elements": [{**button, "url": link}]})
    when = notice.opened_at if event.type == "alert.opened" else event.created_at.isoformat()
    context = f"{notice.verb} at {when}" + (f" by {notice.by}" if notice.by else "")
    blocks.append({"type": "context", "elements": [_mrkdwn_text(slack_escape(context))]})
    fallback = f"{notice.title}: {notice.message}" if notice.message else notice.title
    return {"text": slack_escape(fallback), "blocks": blocks}


def _mrkdwn_text(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text[:3000]}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn_text(text)}


def body_for(kind: str, event: Event) -> bytes:
    return slack_body(event) if kind == ChannelKind.SLACK else webhook_body(event)


def masked_url(kind: str, url: str) -> str:
    """A Slack incoming-webhook URL is itself the credential: show its host and last
    characters only. A Standard Webhooks endpoint is shown whole (its secret is apart)."""
    if kind != ChannelKind.SLACK:
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…{url[-4:]}" if len(url) > 12 else "…"
