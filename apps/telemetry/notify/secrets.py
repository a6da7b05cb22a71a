"""Channel signing secrets: generated, shown once, stored encrypted.

Encrypted with ``apps.core.crypto`` under this module's own purpose label: the same root secret
as the CA keys (``PKI_KEY_ENCRYPTION_KEY``, else ``SECRET_KEY``), a different derived key.
"""

from __future__ import annotations

import base64
import secrets as random

from apps.core import crypto

PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks: 24 to 64 bytes
# The HKDF label of the key that encrypts the stored secrets: it never changes, or they become
# unreadable.
PURPOSE = "fleetops-notification-secrets"


def generate() -> str:
    """A new Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(random.token_bytes(SECRET_BYTES)).decode()


def encrypt(secret: str) -> bytes:
    """``secret`` encrypted for storage."""
    return crypto.encrypt(secret.encode(), purpose=PURPOSE)


def decrypt(blob: bytes | memoryview) -> str:
    """The stored secret in clear; "" when none is stored."""
    data = bytes(blob)
    return crypto.decrypt(data, purpose=PURPOSE).decode() if data else ""
