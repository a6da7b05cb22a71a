"""Encryption at rest: one root secret, one Fernet key per purpose.

The root secret is ``PKI_KEY_ENCRYPTION_KEY`` when set, else ``SECRET_KEY``. Each purpose (CA
private keys, notification signing secrets...) gets its own Fernet key, derived from the root
by HKDF-SHA256 (no salt) with the purpose's label as ``info``: operators keep one secret, and a
key that leaks through one purpose's code decrypts nothing of another's.

A purpose label is part of the stored data's format: changing it, or the derivation, makes
everything it encrypted unreadable. Callers own their labels (``apps.devices.pki.keys``,
``apps.telemetry.notify.secrets``); this module holds no purpose of its own.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

__all__ = ["InvalidToken", "decrypt", "encrypt", "fernet"]


def _root() -> bytes:
    root: str = settings.PKI_KEY_ENCRYPTION_KEY or settings.SECRET_KEY
    return root.encode()


@lru_cache(maxsize=32)
def _derive(root: bytes, purpose: str) -> Fernet:
    # keyed by the root too, so a settings change (a test's override) never meets a stale key
    kdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode())
    return Fernet(base64.urlsafe_b64encode(kdf.derive(root)))


def fernet(purpose: str) -> Fernet:
    """The Fernet (AES-128-CBC + HMAC-SHA256) of ``purpose``, e.g. ``"fleetops-pki-keys"``."""
    return _derive(_root(), purpose)


def encrypt(data: bytes, *, purpose: str) -> bytes:
    """``data`` encrypted and authenticated under ``purpose``'s key (a Fernet token)."""
    return fernet(purpose).encrypt(data)


def decrypt(token: bytes | memoryview, *, purpose: str) -> bytes:
    """The data of a token ``encrypt`` made for ``purpose``; raises ``InvalidToken`` for a token
    of another purpose or root secret, or one altered in storage."""
    return fernet(purpose).decrypt(bytes(token))
