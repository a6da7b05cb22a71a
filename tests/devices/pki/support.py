"""Builders for the PKI tests: keys, CAs, leaves, CSRs (no tests here). Certificates are made
with ``cryptography``, as a manufacturer's tooling would."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from django.utils import timezone

from apps.accounts.models import Organization
from apps.core.actors import SYSTEM
from apps.devices.choices import CertificateKind
from apps.devices.models import Device
from apps.devices.models_pki import CertificateAuthority, DeviceCertificate
from apps.devices.pki import certs, external, issuance

from ..registry_support import make_device, make_version

Pair = tuple[x509.Certificate, Any]


def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def certificate(
    subject: str,
    *,
    key: Any = None,
    issuer: Pair | None = None,
    ca: bool | None = False,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    digest: Any = None,
    key_usage: bool = True,
    usage: x509.KeyUsage | None = None,
) -> Pair:
    """A certificate for ``subject`` signed by ``issuer`` (self-signed when None).
    ``ca=None`` leaves out the basic constraints extension."""
    key = key or ec_key()
    now = timezone.now()
    issuer_name = issuer[0].subject if issuer else name(subject)
    issuer_key = issuer[1] if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    if ca and key_usage:
        builder = builder.add_extension(usage or ca_usage(), True)
    return builder.sign(issuer_key, digest or hashes.SHA256()), key


def ca_usage(cert_sign: bool = True) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(subject: str = "Acme factory CA", **options: Any) -> Pair:
    return certificate(subject, ca=True, **options)


def pem(cert: x509.Certificate) -> str:
    return certs.to_pem(cert)


def chain(*certificates: x509.Certificate) -> str:
    return "".join(pem(cert) for cert in certificates)


def csr_pem(common: str, *, key: Any = None) -> str:
    key = key or ec_key()
    request = x509.CertificateSigningRequestBuilder().subject_name(name(common))
    return request.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def register_ca(
    organization: Organization, ca: Pair, label: str = "Factory"
) -> CertificateAuthority:
    """A verified registered CA, through the real registration flow."""
    pending = external.registration_start(actor=SYSTEM, organization=organization, name=label)
    proof, _ = certificate(pending.verification_code, issuer=ca)
    return external.registration_complete(
        actor=SYSTEM,
        authority=pending,
        certificate_pem=pem(ca[0]),
        verification_certificate_pem=pem(proof),
    )


def fleet_device(organization: Organization, serial: str = "SN-1", **fields: Any) -> Device:
    fields.setdefault("state", "active")
    version = make_version(organization, slug=f"p-{serial.lower()}")
    return make_device(organization, version, serial, **fields)


def issue(device: Device, *, key: Any = None) -> DeviceCertificate:
    csr = issuance.load_csr(csr_pem(str(device.pk), key=key), expected_names=(str(device.pk),))
    row, _ = issuance.issue(device=device, csr=csr)
    return row


def factory_certificate(
    device: Device, authority: CertificateAuthority, leaf: x509.Certificate
) -> DeviceCertificate:
    return issuance.record(
        device=device, certificate=leaf, issuer=authority, kind=CertificateKind.FACTORY
    )


# Made once with `openssl req -x509 -sha1 -days 36500 -subj "/CN=Legacy SHA-1 CA"
#  -addext basicConstraints=critical,CA:TRUE` (cryptography no longer signs with SHA-1).
LEGACY_SHA1_CA = """\
-----BEGIN CERTIFICATE-----
MIIDFzCCAf+gAwIBAgIUcn2QIUAzUnuOPWWSnSjzw+xpfqcwDQYJKoZIhvcNAQEF
BQAwGjEYMBYGA1UEAwwPTGVnYWN5IFNIQS0xIENBMCAXDTI2MTEzMDAzMDM0NVoY
DzIxMjYxMTA2MDMwMzQ1WjAaMRgwFgYDVQQDDA9MZWdhY3kgU0hBLTEgQ0EwggEi
MA0GCSqGSIb3DQEBAQUAA4IBDwAwggEKAoIBAQCoZv1oerOaaxtbkH3QwJ2sK91S
k/JqUhsEOrx2D3jeRdBVwoi9KUptsoSN5IhxUPyl7liR/HomxXqRVOSVbzQVnfQU
ma4HZ09GgZSW9yMV9cnff5YihPEBz6+0uvC2SJ6ia4fkem67As/u6aD2x4MNUKWt
jta8LuEimOTbGOEmSUvbIzBKsYfe2ktHeIXG8xUoIG0I620a73bntd4emi+LiFM3
LklI1JSC96wPREhqxgVACGF2PpOVtU2zWXcMPMe6QlwzH1+cNADuCEXfsFqynOx3
v3Me9DYTuCjdASKzGQUhwYEtPP4E6XecHCvNG4BBxNxMcKmvHa90zrHtk0q5AgMB
AAGjUzBRMB0GA1UdDgQWBBTa7z87pcrDYBz+JmaKKcrkJ3RmwTAfBgNVHSMEGDAW
gBTa7z87pcrDYBz+JmaKKcrkJ3RmwTAPBgNVHRMBAf8EBTADAQH/MA0GCSqGSIb3
DQEBBQUAA4IBAQAsJKYsielyzEfiiWxuZY8J/Bj1NYIF2rSc/bWSx5l/XNly/qFb
tGChhLy+r0yYNrXOH1j/2Wr0DGSmK+rsvomhl9x4Q48HMlj1tu8m/WJtn4J4Wksr
BFbNjwPofAudJZ1jNXEMNUD4rzfLs9HgkyL3M8HuT9lZcSvblMPd0lTkqJoXeOZE
T20bfZJ7G5+j7Nkbg0WdB8zcNpk3MwpnIIF7Ur6PnMXoBLuDYvS2AgIYLuMG8VUV
yy2vkmz783L2x4YVh1kn0srSw1R3UMCEqIKDExVnGgX4izYNnLGSsMiIzoS3+CER
soz1W3SmAYM4kFb4t0H2TqhRqP79KG6hLd/2
-----END CERTIFICATE-----
"""
