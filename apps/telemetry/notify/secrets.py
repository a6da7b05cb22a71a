"""Channel signing secrets: generated, shown once, stored encrypted.

The PKI helper (``apps.devices.pki.keys``) encrypts private keys with a private, PKI-labelled
Fernet key and serializes DER keys, so it is not reused as such. This module derives its own
Fernet key from the same root secret (``PKI_KEY_ENCRYPTION_KEY``, else ``SECRET_KEY``) with a
different HKDF label: one secret for operators to keep, separate keys per purpose.
"""

from __future__ import annotations

import base64
import secrets as random

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

PREFIX = "whsec_"
SECRET_BYTES = 32  # Standard Webhooks: 24 to 64 bytes


def generate() -> str:
    """A new Standard Webhooks secret: ``whsec_`` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(random.token_bytes(SECRET_BYTES)).decode()


def _fernet() -> Fernet:
    root = (settings.PKI_KEY_ENCRYPTION_KEY or settings.SECRET_KEY).encode()
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"fleetops-notification-secrets"
    ).derive(root)
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(secret: str) -> bytes:
    return _fernet().encrypt(secret.encode())


def decrypt(blob: bytes | memoryview) -> str:
    """The stored secret in clear; "" when none is stored."""
    data = bytes(blob)
    return _fernet().decrypt(data).decode() if data else ""
