"""Private keys: generation, encryption at rest, and strength checks."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from apps.core import crypto

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
MIN_RSA_BITS = 2048
MIN_EC_BITS = 256
ACCEPTED_CURVES = ("secp256r1", "secp384r1", "secp521r1")
# The HKDF label of the key that encrypts CA private keys (apps.core.crypto): stored keys were
# encrypted under it, so it never changes.
PURPOSE = "fleetops-pki-keys"


def generate() -> ec.EllipticCurvePrivateKey:
    """A CA or server key: ECDSA P-256 (small, fast, accepted by every MQTT TLS stack)."""
    return ec.generate_private_key(ec.SECP256R1())


def encrypt(key: Any) -> bytes:
    """``key`` as PKCS#8 DER, encrypted (Fernet: AES-128-CBC + HMAC-SHA256) for storage."""
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return crypto.encrypt(der, purpose=PURPOSE)


def decrypt(blob: bytes | memoryview) -> Any:
    """The private key ``encrypt`` stored."""
    return serialization.load_der_private_key(crypto.decrypt(blob, purpose=PURPOSE), password=None)


def describe(public_key: Any) -> tuple[str, int]:
    """``(algorithm, bits)`` of a public key: ``("rsa", 2048)``, ``("ec", 256)``..."""
    if isinstance(public_key, rsa.RSAPublicKey):
        return "rsa", public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ec", public_key.curve.key_size
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "ed448", 456
    return type(public_key).__name__.lower(), 0


def weakness(public_key: Any) -> str:
    """Why ``public_key`` is too weak for a device credential, or "" when it is fine."""
    algorithm, bits = describe(public_key)
    if algorithm == "rsa" and bits < MIN_RSA_BITS:
        return f"RSA keys must have at least {MIN_RSA_BITS} bits (this one has {bits})."
    if algorithm == "ec" and public_key.curve.name not in ACCEPTED_CURVES:
        return f"EC keys must use P-256, P-384 or P-521 (this one uses {public_key.curve.name})."
    if algorithm not in ("rsa", "ec", "ed25519", "ed448"):
        return f"Unsupported key type: {algorithm}."
    return ""


def broker_password_hash(password: str, *, salt: bytes | None = None, iterations: int = 101) -> str:
    """Mosquitto 2's password-file hash (``$7$``: PBKDF2-HMAC-SHA512, 12-byte salt, base64), the
    format ``mosquitto_passwd`` writes. Device tokens are long random secrets, so mosquitto's own
    iteration count is enough: the cost is paid by the broker on every connect."""
    import hashlib
    import os

    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    encoded_salt = base64.b64encode(salt).decode()
    return f"$7${iterations}${encoded_salt}${base64.b64encode(digest).decode()}"
