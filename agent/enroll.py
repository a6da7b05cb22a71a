"""Zero-touch enrollment and certificate renewal over the HTTPS device API.

``enroll`` turns a device that knows only its serial number and a proof (a claim token, or a
factory certificate and key) into an enrolled one: it generates its key, sends a CSR to
``POST /device/v1/enroll`` and installs what comes back. The platform answers

- 201 / 200: enrolled (new / known device): certificate chain, root CA, broker, configuration;
- 202: quarantined as ``discovered`` until somebody approves it: poll again (new nonce, same
  key) after ``retry_after`` seconds, backing off, until the answer is 200/201;
- 429: rate limited: wait ``Retry-After`` (plus a spread so a batch does not return at once);
- 409: a replayed nonce (try again: every attempt has a new one) or a timestamp more than five
  minutes off the platform's clock (adopt the time of the answer's ``Date`` header and retry);
- 5xx or no answer: retry with exponential backoff and full jitter;
- any other 4xx: refused (bad or used-up token, wrong CN, replayed nonce, device refused): no
  retry can fix it, so ``EnrollmentError`` explains why.

``renew`` replaces the certificate (and key) before it expires, authenticated by the current
one."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import random
import secrets
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from . import keys
from .backoff import Backoff, retry_after_seconds, spread
from .device_api import PlatformUnreachable, Reply, Transport, post_json
from .state import Identity, StateDir

log = logging.getLogger("agent.enroll")

ENROLL_PATH = "/device/v1/enroll"
RENEW_PATH = "/device/v1/certificate/renew"
CERTIFICATE_HEADER = (
    "X-SSL-Client-Cert"  # what the platform's reverse proxy sets (DEVICE_CERT_HEADER)
)
DEFAULT_QUARANTINE_POLL = 30.0
DEFAULT_RATE_LIMIT_WAIT = 60.0
MAX_COMMON_NAME = 64


class EnrollmentError(Exception):
    """The platform refused (``exit_code`` 3) or could not be reached in time (4)."""

    exit_code = 3

    def __init__(self, message: str, *, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class EnrollmentTimeout(EnrollmentError):
    exit_code = 4


@dataclass(frozen=True)
class Proof:
    """How this device proves it may enroll: a claim token, or a factory certificate + key."""

    claim_token: str | None = None
    factory_certificate: str | None = None  # PEM chain, leaf first
    factory_key: Any = None

    def fields(self, *, serial: str, nonce: str, timestamp: str, csr: str) -> dict[str, str]:
        if self.claim_token:
            return {"claim_token": self.claim_token}
        if self.factory_certificate and self.factory_key is not None:
            statement = keys.enrollment_statement(serial, nonce, timestamp, csr)
            return {
                "factory_certificate": self.factory_certificate,
                "factory_signature": keys.factory_signature(self.factory_key, statement),
            }
        raise ValueError("A claim token, or a factory certificate and its key, is required.")


@dataclass(frozen=True)
class Enrollment:
    """What to enroll with, and how patiently."""

    url: str  # the platform, e.g. https://fleet.example.com
    serial: str
    proof: Proof
    credential: str = "certificate"  # or "token" (if the policy allows; no client certificate)
    profile: str | None = None
    hardware_revision: str | None = None
    inventory: dict[str, Any] | None = None
    transport: Transport = field(default_factory=Transport)
    max_wait: float | None = None  # give up after this many seconds; None: keep trying
    backoff_cap: float = 300.0
    poll_cap: float = 600.0  # longest wait between two polls of a quarantined enrollment

    def __post_init__(self) -> None:
        if not 1 <= len(self.serial) <= MAX_COMMON_NAME:
            # the serial is the CSR's common name at first contact (X.509 allows 64 characters)
            raise ValueError(f"The serial number must have 1 to {MAX_COMMON_NAME} characters.")
        if self.credential not in ("certificate", "token"):
            raise ValueError("The credential is 'certificate' or 'token'.")


Sleep = Callable[[float], Awaitable[Any]]


@dataclass
class Clock:
    """The device's idea of the time, corrected by the platform's when they disagree by more
    than the enrollment window (a device without a battery-backed clock boots in 1970)."""

    offset: float = 0.0  # seconds to add to the local clock

    def now(self) -> str:
        return utc_now(self.offset)

    def correct_from(self, date_header: str | None) -> bool:
        """Adopt the server's time from an HTTP ``Date`` header; whether it could."""
        if not date_header:
            return False
        try:
            server = parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            return False
        self.offset = (server - dt.datetime.now(dt.UTC)).total_seconds()
        return True


async def enroll(
    state: StateDir,
    request: Enrollment,
    *,
    rng: random.Random | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Clock | None = None,
) -> Identity:
    """Enroll until the platform hands out credentials; they are installed in ``state``."""
    rng = rng or random.Random()
    deadline = None if request.max_wait is None else time.monotonic() + request.max_wait
    failures = Backoff(base=2.0, cap=request.backoff_cap, rng=rng)
    polls = Backoff(base=DEFAULT_QUARANTINE_POLL, cap=request.poll_cap, rng=rng)
    clock = clock or Clock()
    while True:
        outcome = await _attempt(state, request, Retries(failures, polls, rng, clock))
        if isinstance(outcome, Identity):
            return outcome
        if deadline is not None and time.monotonic() + outcome > deadline:
            raise EnrollmentTimeout(f"Not enrolled after {request.max_wait:g} s; giving up.")
        await sleep(outcome)


@dataclass
class Retries:
    """What carries over from one attempt to the next."""

    failures: Backoff  # platform unreachable or failing
    polls: Backoff  # quarantine
    rng: random.Random
    clock: Clock


async def _attempt(state: StateDir, request: Enrollment, retries: Retries) -> Identity | float:
    """One request: the installed identity, or how long to wait before the next one."""
    failures, polls, rng = retries.failures, retries.polls, retries.rng
    key = state.pending_key() if request.credential == "certificate" else None
    url = request.url.rstrip("/") + ENROLL_PATH
    body = enrollment_body(state, request, key, now=retries.clock.now())
    try:
        reply = await asyncio.to_thread(post_json, url, body, transport=request.transport)
    except PlatformUnreachable as error:
        delay = failures.next_delay()
        log.warning("enroll %s: %s; retrying in %.1f s", request.serial, error, delay)
        return delay
    if reply.status in (200, 201):
        return install(state, request, reply.body, key)
    if reply.status == 409:
        return _conflict(request, reply, retries)
    if reply.status == 202:
        state.save_pending({"device_id": reply.body.get("device_id"), "state": "discovered"})
        polls.base = retry_after_seconds(
            reply.body.get("retry_after"), default=DEFAULT_QUARANTINE_POLL
        )
        # never sooner than asked, later and later, and not in step with the rest of the batch
        delay = spread(max(polls.base, polls.next_delay()), rng, fraction=0.25)
        log.info("enroll %s: quarantined, polling in %.0f s", request.serial, delay)
        return delay
    if reply.status == 429:
        wait = retry_after_seconds(
            reply.headers.get("retry-after"), default=DEFAULT_RATE_LIMIT_WAIT
        )
        return spread(wait, rng)
    if reply.status >= 500:
        delay = failures.next_delay()
        log.warning("enroll %s: %s; retrying in %.1f s", request.serial, reply.status, delay)
        return delay
    raise EnrollmentError(f"Enrollment refused: {reply.describe_error()}", reply=reply)


def _conflict(request: Enrollment, reply: Reply, retries: Retries) -> float:
    """409: a replayed nonce (each attempt has a new one: just try again) or a timestamp too far
    from the server's clock (adopt the server's time from its ``Date`` header, then retry)."""
    code = reply.error.get("code")
    if code == "stale_timestamp" and retries.clock.correct_from(reply.headers.get("date")):
        log.warning(
            "enroll %s: our clock is %.0f s off the platform's; using the platform's time",
            request.serial,
            -retries.clock.offset,
        )
        return 0.0
    if code in ("stale_timestamp", "replayed_nonce"):
        delay = retries.failures.next_delay()
        log.warning("enroll %s: %s; retrying in %.1f s", request.serial, code, delay)
        return delay
    raise EnrollmentError(f"Enrollment refused: {reply.describe_error()}", reply=reply)


def enrollment_body(
    state: StateDir, request: Enrollment, key: Any, *, now: str | None = None
) -> dict[str, Any]:
    """The request: serial, CSR, a fresh nonce and timestamp (against replays), the proof."""
    known_id = state.pending().get("device_id")
    csr = keys.csr_pem(key, str(known_id or request.serial)) if key is not None else ""
    nonce = secrets.token_hex(16)
    timestamp = now or utc_now()
    body: dict[str, Any] = {
        "serial": request.serial,
        "nonce": nonce,
        "timestamp": timestamp,
        "credential": request.credential,
    }
    if csr:
        body["csr"] = csr
    body.update(
        request.proof.fields(serial=request.serial, nonce=nonce, timestamp=timestamp, csr=csr)
    )
    optional = {
        "profile": request.profile,
        "hardware_revision": request.hardware_revision,
        "inventory": request.inventory,
    }
    body.update({name: value for name, value in optional.items() if value})
    return body


def install(state: StateDir, request: Enrollment, body: dict[str, Any], key: Any) -> Identity:
    """Check and store an enrollment answer; ``identity.json`` goes last (it marks success)."""
    try:
        identity = Identity.from_enrollment(
            body, serial=request.serial, platform_url=request.url, credential=request.credential
        )
        state.save_ca(str(body["ca_certificate"]))
        if request.credential == "token":
            state.save_token(str(body["token"]))
        else:
            chain = str(body.get("certificate_chain") or body["certificate"])
            check_certificate(chain, key, identity.device_id)
            state.save_certificate(key, chain)
    except (KeyError, TypeError, ValueError) as error:
        raise EnrollmentError(f"Unexpected enrollment answer ({error!r}).") from error
    state.save_config(dict(body.get("configuration") or {}))
    state.save_identity(identity)
    state.clear_pending()
    log.info("enroll %s: enrolled as %s (%s)", request.serial, identity.device_id, identity.state)
    return identity


def check_certificate(chain: str, key: Any, device_id: str) -> None:
    leaf = keys.certificates(chain)[0]
    if not keys.same_public_key(key, leaf):
        raise ValueError("the certificate is not for this device's key")
    if keys.common_name(leaf) != device_id:
        raise ValueError(f"the certificate's CN is {keys.common_name(leaf)!r}, not {device_id!r}")


class RenewalFailed(Exception):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def renew(state: StateDir, *, transport: Transport | None = None) -> Identity:
    """Replace the certificate (with a new key) before it expires; returns the new identity."""
    identity = state.identity()
    key = keys.generate_key()
    transport, headers = device_authentication(state, identity, transport or Transport())
    url = identity.platform_url.rstrip("/") + RENEW_PATH
    body = {"csr": keys.csr_pem(key, identity.device_id)}
    try:
        reply = await asyncio.to_thread(post_json, url, body, transport=transport, headers=headers)
    except PlatformUnreachable as error:
        raise RenewalFailed(str(error)) from error
    if reply.status != 200:
        wait = reply.headers.get("retry-after")
        raise RenewalFailed(
            f"Renewal refused: {reply.describe_error()}",
            retry_after=retry_after_seconds(wait, default=0) if wait else None,
        )
    try:
        chain = str(reply.body.get("certificate_chain") or reply.body["certificate"])
        check_certificate(chain, key, identity.device_id)
    except (KeyError, ValueError) as error:
        raise RenewalFailed(f"Unexpected renewal answer ({error!r}).") from error
    state.save_certificate(key, chain)
    renewed = dataclasses.replace(
        identity, renew_after=reply.body.get("renew_after"), expires_at=reply.body.get("expires_at")
    )
    state.save_identity(renewed)
    log.info("renewed the certificate of %s until %s", identity.device_id, renewed.expires_at)
    return renewed


def device_authentication(
    state: StateDir, identity: Identity, transport: Transport
) -> tuple[Transport, dict[str, str]]:
    """How the device proves who it is to the HTTPS device API: its token in the
    ``Authorization`` header, or its certificate in the TLS handshake. Over plain ``http``
    (development only: there is no handshake to carry it) the certificate travels in the header
    the reverse proxy would otherwise set, which the platform honours only from its trusted
    proxies (loopback by default)."""
    if identity.credential == "token":
        return transport, {"Authorization": f"Bearer {state.token()}"}
    if identity.platform_url.startswith("https:"):
        return dataclasses.replace(transport, client_certificate=str(state.credentials_file)), {}
    pem = keys.certificate_pem(keys.certificates(state.certificate_chain())[0])
    return transport, {CERTIFICATE_HEADER: urllib.parse.quote(pem, safe="")}


def utc_now(offset: float = 0.0) -> str:
    """``2026-11-30T10:00:00.123Z``: ISO 8601, UTC, milliseconds."""
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
