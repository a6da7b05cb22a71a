"""The device's own key pair and the certificate signing request (CSR) built from it.

The private key is generated on the device and never leaves it: the platform only ever sees the
CSR, which carries the public key and is signed with the private one. On real hardware, generate
and keep the key in a secure element or TPM instead, and build the same CSR with it."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey


def generate_key() -> PrivateKey:
    """ECDSA P-256: small, fast to handshake, and accepted by every MQTT TLS stack."""
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(pem: bytes) -> Any:
    return serialization.load_pem_private_key(pem, password=None)


def csr_pem(key: Any, common_name: str) -> str:
    """A CSR for ``key`` with CN = ``common_name`` (the serial number before the device knows
    its id, its device id afterwards); the platform decides everything else in the certificate."""
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode()


def certificates(pem: str | bytes) -> list[x509.Certificate]:
    data = pem.encode() if isinstance(pem, str) else pem
    return x509.load_pem_x509_certificates(data)


def certificate_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def common_name(certificate: x509.Certificate) -> str:
    values = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def same_public_key(key: Any, certificate: x509.Certificate) -> bool:
    """Does ``certificate`` certify ``key``? (A device must never install a certificate for
    somebody else's key: it could not use it, and it would have thrown its own away.)"""
    raw = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    ours = key.public_key().public_bytes(encoding, raw)
    return bool(ours == certificate.public_key().public_bytes(encoding, raw))


def factory_signature(factory_key: Any, message: str) -> str:
    """Base64 signature of ``message`` with the factory key: ECDSA or RSA PKCS#1 v1.5 over
    SHA-256, or Ed25519 (the platform verifies with the factory certificate's public key)."""
    data = message.encode()
    if isinstance(factory_key, ec.EllipticCurvePrivateKey):
        signature = factory_key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(factory_key, rsa.RSAPrivateKey):
        signature = factory_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    elif isinstance(factory_key, ed25519.Ed25519PrivateKey):
        signature = factory_key.sign(data)
    else:
        raise TypeError(f"Unsupported factory key type: {type(factory_key).__name__}")
    return base64.b64encode(signature).decode()


def enrollment_statement(serial: str, nonce: str, timestamp: str, csr: str) -> str:
    """What a factory key signs: binds the serial, this request's nonce and time, and the CSR."""
    digest = hashlib.sha256(csr.encode()).hexdigest()
    return f"fleetops-enroll:v1:{serial}:{nonce}:{timestamp}:{digest}"
