"""Small helpers over ``cryptography.x509`` objects."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from . import keys


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def to_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def load_pem(text: str | bytes) -> x509.Certificate:
    """The first certificate of a PEM text; ValueError when there is none."""
    data = text.encode() if isinstance(text, str) else text
    return x509.load_pem_x509_certificate(data)


def load_chain(text: str | bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, leaf first; ValueError when there is none."""
    data = text.encode() if isinstance(text, str) else text
    return x509.load_pem_x509_certificates(data)


def common_name(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


def subject_key_identifier(certificate: x509.Certificate) -> str:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    except x509.ExtensionNotFound:
        return ""
    return extension.value.digest.hex()


def authority_key_identifier(certificate: x509.Certificate) -> str:
    try:
        extension = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        return ""
    return (extension.value.key_identifier or b"").hex()


def name(common: str, organization: str = "") -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common[:64])]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[:64]))
    return x509.Name(attributes)


@dataclass(frozen=True)
class Facts:
    """What the registry stores about a certificate."""

    serial_number: str
    fingerprint: str
    subject: str
    not_before: dt.datetime
    not_after: dt.datetime
    key_algorithm: str
    key_size: int
    signature_hash: str


def facts(certificate: x509.Certificate) -> Facts:
    algorithm, bits = keys.describe(certificate.public_key())
    digest = certificate.signature_hash_algorithm
    return Facts(
        serial_number=format(certificate.serial_number, "x"),
        fingerprint=fingerprint(certificate),
        subject=certificate.subject.rfc4514_string()[:500],
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        key_algorithm=algorithm,
        key_size=bits,
        signature_hash=digest.name if digest is not None else "",
    )
