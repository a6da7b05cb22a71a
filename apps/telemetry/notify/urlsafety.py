"""Outbound URLs of notification channels: schemes and destinations (SSRF).

A channel's URL is chosen by a tenant and fetched by our workers, so it must not reach what
only our network can: loopback, private, link-local (cloud metadata at 169.254.169.254),
carrier-grade NAT, multicast and reserved addresses. The check runs when a channel is saved
and again before every delivery (a name may resolve elsewhere later). Redirects are never
followed. ``settings.NOTIFY_ALLOW_PRIVATE_ADDRESSES`` lifts the address check (by default
only with DEBUG, and in tests). What remains is a DNS answer that changes between the check
and the connection (rebinding); docs/notifications.md says how to close that with an egress
proxy.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings

SCHEMES = ("http", "https")


class UnsafeURL(ValueError):
    """The URL may not be used by a channel; the message says why (shown to the user)."""


def private_allowed() -> bool:
    allowed = getattr(settings, "NOTIFY_ALLOW_PRIVATE_ADDRESSES", None)
    return bool(settings.DEBUG if allowed is None else allowed)


def check_scheme(url: str) -> None:
    """Only absolute http(s) URLs with a host and without credentials in them."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise UnsafeURL("Only http and https URLs are allowed.")
    if not parts.hostname:
        raise UnsafeURL("The URL has no host.")
    if parts.username or parts.password:
        raise UnsafeURL("Credentials in the URL are not allowed.")
    try:
        parts.port  # noqa: B018  # raises on a port that is not a number in 0-65535
    except ValueError as error:
        raise UnsafeURL("The URL's port is not valid.") from error


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def addresses(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a literal address is itself)."""
    try:
        found = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except OSError as error:
        raise UnsafeURL(f"The host {host} does not resolve.") from error
    return sorted({str(info[4][0]) for info in found})


def check_destination(url: str) -> None:
    """Refuse a URL whose scheme is not http(s) or whose host resolves to a non-public
    address (unless private addresses are allowed)."""
    check_scheme(url)
    if private_allowed():
        return
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    blocked = [address for address in addresses(host, port) if not _public(address)]
    if blocked:
        raise UnsafeURL(
            f"The host {host} resolves to a private or reserved address ({blocked[0]})."
        )
