"""Enrollment throughput for ``bench/connectivity.py``: ``POST /device/v1/enroll`` through a real
daphne against the signing alone.

The server is ``daphne config.asgi:application`` with the production settings (``DEBUG`` off,
HTTPS assumed behind the reverse proxy, hence ``X-Forwarded-Proto: https``), started on a free
port against the bench database, with the enrollment rate limits raised for the run (every
request comes from one address with one claim token). Device keys and CSRs (CN = serial, as at
first contact) are generated before the timed part; each request gets its nonce and timestamp
when it is sent, as a device's would. A few enrollments warm the server up (the customer's
intermediate CA is created by the first one) before the clock starts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENROLL = "/device/v1/enroll"
WARMUP = 10
RATE_LIMIT = 1_000_000  # per minute: ENROLL_RATE_PER_SOURCE and _PER_TOKEN for the bench server
HEADERS = {"Content-Type": "application/json", "X-Forwarded-Proto": "https"}


def run(world: Any, *, count: int, clients: int, log: Path) -> dict[str, Any]:
    """Enroll ``count`` devices (after ``WARMUP``) and time it; time the signing alone for the
    same public keys before and after. Returns the figures."""
    from apps.devices.models import Device

    token = claim_token(world.policy, count + WARMUP)
    requests = [csr(f"ENR-{index:06d}") for index in range(count + WARMUP)]
    raw = [signing_rate(world.customer, requests[WARMUP:])]
    found: dict[str, Any] = {"devices": count, "clients": clients, "endpoint_rate": None}
    with daphne(log) as port:
        warm = [post(port, token, serial, pem) for serial, _, pem in requests[:WARMUP]]
        if warm != [201] * WARMUP:
            print(f"  the warm-up enrollments answered {warm} (see {log})")
            return found | {"statuses": dict(Counter(warm)), "raw_rate": raw[0]}
        chunks = [requests[WARMUP + offset :: clients] for offset in range(clients)]
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            answered = list(pool.map(lambda chunk: enroll_all(port, token, chunk), chunks))
        seconds = time.perf_counter() - started
    raw.append(signing_rate(world.customer, requests[WARMUP:]))
    serials = [serial for serial, _, _ in requests[WARMUP:]]
    recorded = Device.objects.filter(
        serial__in=serials, state="active", certificates__status="active"
    ).count()
    return found | {
        "statuses": dict(Counter(status for chunk in answered for status in chunk)),
        "endpoint_seconds": seconds,
        "endpoint_rate": count / seconds,
        "raw_rates": raw,
        "raw_rate": max(raw),
        "recorded": recorded,
    }


def claim_token(policy: Any, uses: int) -> str:
    from django.utils import timezone

    from apps.core.actors import SYSTEM
    from apps.devices.enrollment_policies import claim_token_create

    expires = timezone.now() + dt.timedelta(days=1)
    issued = claim_token_create(actor=SYSTEM, policy=policy, expires_at=expires, max_uses=uses)
    return issued.token


def csr(serial: str) -> tuple[str, Any, str]:
    """A device's key and CSR (CN = its serial): (serial, public key, CSR PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)]))
        .sign(key, hashes.SHA256())
    )
    return serial, key.public_key(), request.public_bytes(serialization.Encoding.PEM).decode()


def signing_rate(organization: Any, requests: list[tuple[str, Any, str]]) -> float:
    """Certificates/s of ``issuance.device_certificate`` for the requests' public keys, as the
    enrollment calls it (it reads the organization's intermediate CA row; the decrypted key is
    cached per process, as in the server); devices are not saved, certificates not recorded."""
    from apps.devices.models import Device
    from apps.devices.pki import issuance

    devices = [Device(pk=uuid.uuid4(), organization=organization) for _ in requests]
    started = time.perf_counter()
    for device, (_, public_key, _) in zip(devices, requests, strict=True):
        issuance.device_certificate(device=device, public_key=public_key)
    return len(requests) / (time.perf_counter() - started)


def body(token: str, serial: str, pem: str) -> bytes:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    data = {
        "serial": serial,
        "csr": pem,
        "nonce": secrets.token_hex(16),
        "timestamp": now,
        "claim_token": token,
    }
    return json.dumps(data).encode()


def enroll_all(port: int, token: str, requests: list[tuple[str, Any, str]]) -> list[int]:
    """One client: its requests one after the other on one keep-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    statuses = []
    try:
        for serial, _, pem in requests:
            connection.request("POST", ENROLL, body(token, serial, pem), HEADERS)
            response = connection.getresponse()
            answer = response.read()
            ok = response.status != 201 or b"BEGIN CERTIFICATE" in answer
            statuses.append(response.status if ok else -1)
    finally:
        connection.close()
    return statuses


def post(port: int, token: str, serial: str, pem: str) -> int:
    return enroll_all(port, token, [(serial, None, pem)])[0]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def daphne(log: Path) -> Iterator[int]:
    """A daphne serving the platform (production settings) on a free port; stopped by PID."""
    port = free_port()
    environment = os.environ | {
        "DJANGO_SETTINGS_MODULE": "config.settings.prod",
        "ENROLL_RATE_PER_SOURCE": str(RATE_LIMIT),
        "ENROLL_RATE_PER_TOKEN": str(RATE_LIMIT),
        "LOG_LEVEL": "WARNING",
    }
    log.parent.mkdir(parents=True, exist_ok=True)
    binary = Path(sys.executable).with_name("daphne")
    command = [str(binary), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, process)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    raise RuntimeError(f"daphne did not listen on port {port} (exit {process.poll()})")
