"""The HTTPS device API client (``/device/v1/``): JSON over the standard library's ``urllib``.

Every call has an explicit timeout. With an ``https`` URL the platform's certificate is verified
(the system trust store, or ``ca_file`` for a private CA), and the device can authenticate with
its own certificate in the TLS handshake. Redirects are refused: a device does not follow a
server that moved without telling it through configuration."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from . import __version__

DEFAULT_TIMEOUT = 15.0
MAX_RESPONSE_BYTES = 1_048_576
USER_AGENT = f"fleetops-agent/{__version__}"


class PlatformUnreachable(Exception):
    """No HTTP answer at all (DNS, connection refused, TLS failure, timeout)."""


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, JSON body (``{}`` when empty), headers (lower-case names)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def error(self) -> dict[str, Any]:
        """The platform's error envelope ``{"code", "message", "fields"}`` (empty if none)."""
        envelope = self.body.get("error")
        return envelope if isinstance(envelope, dict) else {}

    def describe_error(self) -> str:
        """A one-line explanation for a human (status, code, message, field errors)."""
        error = self.error
        text = f"HTTP {self.status}"
        if error.get("code"):
            text += f" {error['code']}"
        if error.get("message"):
            text += f": {error['message']}"
        for name, problems in (error.get("fields") or {}).items():
            listed = problems if isinstance(problems, list) else [problems]
            text += f" [{name}: {' '.join(str(problem) for problem in listed)}]"
        return text


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


@dataclass(frozen=True)
class Transport:
    """How to reach the platform: TLS trust, optional client certificate, timeout."""

    ca_file: str | None = None  # the platform's CA for https (None: the system store)
    client_certificate: str | None = None  # PEM file with our key and certificate chain
    timeout: float = DEFAULT_TIMEOUT

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.client_certificate:
            context.load_cert_chain(self.client_certificate)
        return context


def get_json(
    url: str, *, transport: Transport | None = None, headers: dict[str, str] | None = None
) -> Reply:
    """GET a JSON document; the reply whatever its status (blocking, like ``post_json``)."""
    request = urllib.request.Request(url, method="GET", headers=_headers(headers))  # noqa: S310 (checked in _send)
    return _send(request, transport)


def _headers(extra: dict[str, str] | None) -> dict[str, str]:
    return {"Accept": "application/json", "User-Agent": USER_AGENT, **(extra or {})}


def post_json(
    url: str,
    body: dict[str, Any],
    *,
    transport: Transport | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """POST ``body`` as JSON; the reply whatever its status. Blocking: call it from a thread
    (``asyncio.to_thread``) inside an event loop."""
    transport = transport or Transport()
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked just below)
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **(headers or {}),
        },
    )
    return _send(request, transport)


def _send(request: urllib.request.Request, transport: Transport | None) -> Reply:
    transport = transport or Transport()
    url = request.full_url
    if request.type not in ("http", "https"):
        raise ValueError(f"Unsupported URL scheme: {url}")
    handlers: list[Any] = [_RefuseRedirects()]
    if request.type == "https":
        handlers.append(urllib.request.HTTPSHandler(context=transport.context()))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=transport.timeout) as response:
            return _reply(response.status, response.read(MAX_RESPONSE_BYTES), response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return _reply(error.code, error.read(MAX_RESPONSE_BYTES), error.headers)
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise PlatformUnreachable(f"{url}: {reason}") from error


def _reply(status: int, raw: bytes, headers: Any) -> Reply:
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        text = raw[:200].decode(errors="replace")
        parsed = {"error": {"code": "bad_response", "message": f"Not a JSON object: {text!r}"}}
    return Reply(status=status, body=parsed, headers={k.lower(): v for k, v in headers.items()})
