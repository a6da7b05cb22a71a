"""Device certificates from CSRs, and the broker's server certificate.

A CSR is accepted when it parses, its self-signature verifies, its key is strong enough
(``keys.weakness``) and its common name is one the caller expects (the device UUID; at first
enrollment also the serial number, since the device does not know its id yet). Only the public
key is taken from it: the issued certificate always says CN = device UUID."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from ..choices import CertificateKind, CredentialStatus
from ..models_pki import DeviceCertificate
from . import authorities, certs, keys

if TYPE_CHECKING:
    from ..models import Device

MAX_CSR_BYTES = 16_384


@dataclass(frozen=True)
class Issued:
    """An operational certificate just issued: its row, the chain to hand the device (its
    certificate, then the CAs up to the root) and the installation's current root certificate,
    read along with the issuing CA ("" when it could not be)."""

    row: DeviceCertificate
    chain_pem: str
    root_pem: str


def load_csr(
    pem: Any, *, expected_names: tuple[str, ...], field: str = "csr"
) -> x509.CertificateSigningRequest:
    """The CSR in ``pem``, checked; ValidationError naming ``field`` otherwise."""
    if not isinstance(pem, str) or not pem.strip():
        raise ValidationError({field: "Required: a PEM certificate signing request."})
    if len(pem) > MAX_CSR_BYTES:
        raise ValidationError({field: f"Too large (at most {MAX_CSR_BYTES} bytes)."})
    try:
        csr = x509.load_pem_x509_csr(pem.encode())
    except ValueError:
        raise ValidationError({field: "Not a PEM certificate signing request."}) from None
    if not csr.is_signature_valid:
        raise ValidationError({field: "The request's signature does not verify."})
    weakness = keys.weakness(csr.public_key())
    if weakness:
        raise ValidationError({field: f"Weak key: {weakness}"})
    common = certs.common_name(csr.subject)
    if common not in expected_names:
        wanted = " or ".join(repr(name) for name in expected_names)
        raise ValidationError({field: f"The request's CN must be {wanted} (it is {common!r})."})
    return csr


def device_certificate(
    *, device: Device, public_key: Any, days: int | None = None
) -> tuple[x509.Certificate, authorities.Signer]:
    """Sign a certificate for ``device`` (CN = its UUID) with its organization's intermediate."""
    issuer = authorities.intermediate(device.organization)
    now = timezone.now()
    lifetime = dt.timedelta(days=days or settings.PKI_DEVICE_CERT_DAYS)
    builder = (
        x509.CertificateBuilder()
        .subject_name(certs.name(str(device.pk)))
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - authorities.BACKDATE)
        .not_valid_after(min(now + lifetime, issuer.certificate.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"urn:fleetops:device:{device.pk}")]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    return builder.sign(issuer.key, hashes.SHA256()), issuer


def record(
    *,
    device: Device,
    certificate: x509.Certificate,
    issuer: Any,
    kind: str = CertificateKind.OPERATIONAL,
) -> DeviceCertificate:
    """Store ``certificate`` as one of ``device``'s credentials."""
    facts = certs.facts(certificate)
    return DeviceCertificate.objects.create(
        device=device,
        issuer=issuer,
        kind=kind,
        serial_number=facts.serial_number,
        fingerprint=facts.fingerprint,
        subject=facts.subject,
        not_before=facts.not_before,
        not_after=facts.not_after,
        key_algorithm=facts.key_algorithm,
        key_size=facts.key_size,
        signature_hash=facts.signature_hash,
        certificate_pem=certs.to_pem(certificate),
        status=CredentialStatus.ACTIVE,
    )


def issue(*, device: Device, csr: x509.CertificateSigningRequest) -> tuple[DeviceCertificate, str]:
    """Issue and record an operational certificate for ``device`` from a checked CSR. Returns
    the row and the chain to hand the device (its certificate, then the CAs up to the root)."""
    issued = issue_with_root(device=device, csr=csr)
    return issued.row, issued.chain_pem


def issue_with_root(*, device: Device, csr: x509.CertificateSigningRequest) -> Issued:
    """``issue``, plus the current root certificate read in the same CA lookup (enrollment
    hands it to the device without another query)."""
    certificate, issuer = device_certificate(device=device, public_key=csr.public_key())
    row = record(device=device, certificate=certificate, issuer=issuer.authority)
    return Issued(row, row.certificate_pem + issuer.chain_pem(), issuer.root_pem)


def server_certificate(hostnames: list[str], days: int = 825) -> tuple[str, str]:
    """A TLS server certificate for the broker signed by the root: (certificate chain PEM,
    unencrypted private key PEM) to write into the broker's directory."""
    from cryptography.hazmat.primitives import serialization

    root = authorities.root()
    key = keys.generate()
    names: list[x509.GeneralName] = []
    for host in hostnames:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    now = timezone.now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(certs.name(hostnames[0], "Fleetops"))
        .issuer_name(root.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - authorities.BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(root.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return certs.to_pem(certificate) + root.authority.certificate_pem, key_pem
