"""Authentication of the HTTPS device API (``/device/v1/``): a device acts as itself.

Two ways in:

- **Client certificate**, terminated by the reverse proxy: nginx verifies the TLS client
  certificate against the installation root and forwards it, URL-escaped
  (``$ssl_client_escaped_cert``), in ``DEVICE_CERT_HEADER``. The header is believed only when
  the request comes from one of ``DEVICE_TRUSTED_PROXIES`` (anyone else could write it). The
  certificate is looked up by fingerprint: it must be one of ours, not revoked and unexpired
  (a superseded one stays valid until it expires, as for the broker). A revoked certificate is
  refused and its ``last_seen_at`` recorded, so the certificate audit reports it as "revoked but
  still connecting".
- **Device token**: ``Authorization: Bearer fo_dev_<prefix>_<secret>`` (never a query string).

The result is ``request.user`` = ``DevicePrincipal`` (its ``.device``) and ``request.auth`` =
an ``Actor`` of kind device. A suspended device is refused (403); a quarantined, decommissioned
or replaced one has no usable credential.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import unquote

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from apps.core.actors import Actor

from .choices import CredentialStatus, DeviceState
from .enrollment_guard import is_trusted_proxy
from .models import Device, DeviceCertificate
from .pki import certs
from .pki import services as credential_services

TOKEN_HEAD = "fo_dev_"
ACCEPTED_STATES = frozenset({DeviceState.ESCROW, DeviceState.ACTIVE, DeviceState.MAINTENANCE})
USABLE = (CredentialStatus.ACTIVE, CredentialStatus.SUPERSEDED)
SEEN_RESOLUTION = dt.timedelta(minutes=1)


class DevicePrincipal(AnonymousUser):
    """The ``request.user`` of a device request: authenticated, not a person."""

    def __init__(self, device: Device) -> None:
        super().__init__()
        self.device = device

    @property
    def is_authenticated(self) -> bool:  # type: ignore[override]
        return True

    def __str__(self) -> str:
        return f"device {self.device.pk}"


def _header_name() -> str:
    return "HTTP_" + settings.DEVICE_CERT_HEADER.upper().replace("-", "_")


class DeviceAuthentication(authentication.BaseAuthentication):
    """A client certificate forwarded by a trusted proxy, or a device token."""

    def authenticate(self, request: Request) -> tuple[Any, Actor] | None:
        if any(
            value.startswith(TOKEN_HEAD)
            for _, values in request.query_params.lists()
            for value in values
        ):
            raise exceptions.AuthenticationFailed(
                "Device tokens are accepted only in the Authorization header."
            )
        forwarded = request.META.get(_header_name(), "")
        if forwarded and is_trusted_proxy(request.META.get("REMOTE_ADDR", "")):
            device = certificate_device(forwarded)
        else:
            token = _bearer(request)
            if not token:
                return None
            found = credential_services.authenticate_token(token)
            if found is None:
                raise exceptions.AuthenticationFailed(
                    "The device token is invalid, expired or revoked."
                )
            device = found.device
        return DevicePrincipal(device), _accepted(device)

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="fleetops-device"'


def _bearer(request: Request) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip().startswith(TOKEN_HEAD):
        return ""
    return value.strip()


def _accepted(device: Device) -> Actor:
    if device.state == DeviceState.SUSPENDED:
        raise exceptions.PermissionDenied("The device is suspended.")
    if device.state not in ACCEPTED_STATES:
        raise exceptions.AuthenticationFailed(f"The device is {device.state}.")
    return credential_services.device_actor(device)


def certificate_device(forwarded: str) -> Device:
    """The device whose usable certificate the proxy forwarded; 401 otherwise."""
    try:
        certificate = certs.load_pem(unquote(forwarded))
    except ValueError:
        raise exceptions.AuthenticationFailed(
            "The forwarded client certificate is not a PEM certificate."
        ) from None
    now = timezone.now()
    rows = list(
        DeviceCertificate.objects.select_related("device")
        .filter(fingerprint=certs.fingerprint(certificate))
        .order_by("-id")[:5]
    )
    usable = [row for row in rows if row.status in USABLE and row.not_before <= now < row.not_after]
    if len({row.device_id for row in usable}) == 1:
        row = usable[0]
        if row.last_seen_at is None or now - row.last_seen_at > SEEN_RESOLUTION:
            DeviceCertificate.objects.filter(pk=row.pk).update(last_seen_at=now)
        return row.device
    revoked = [row.pk for row in rows if row.status == CredentialStatus.REVOKED]
    if revoked:
        # the certificate audit reports revoked certificates still presented
        DeviceCertificate.objects.filter(pk__in=revoked).update(last_seen_at=now)
        raise exceptions.AuthenticationFailed("The client certificate has been revoked.")
    raise exceptions.AuthenticationFailed("The client certificate is not a device credential here.")
