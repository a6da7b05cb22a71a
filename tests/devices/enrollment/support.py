"""Builders for the enrollment tests: profiles, policies, claim tokens, device keys and CSRs, a
manufacturer's factory CA registered through the bring-your-own-CA services, and the request
bodies a device sends (no tests here)."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import secrets
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.models import Organization
from apps.core.actors import SYSTEM
from apps.devices import enrollment_policies
from apps.devices.enrollment_proofs import signing_string
from apps.devices.models import CertificateAuthority, EnrollmentPolicy
from apps.devices.pki import external
from apps.profiles.models import DeviceProfile, ProfileVersion

ENROLL = "/device/v1/enroll"


def make_profile(
    organization: Organization, slug: str = "sensor", interval: int = 60
) -> DeviceProfile:
    profile = DeviceProfile.objects.create(organization=organization, name=slug.title(), slug=slug)
    ProfileVersion.objects.create(
        profile=profile, number=1, heartbeat_interval_seconds=interval, heartbeat_missed_beats=3
    )
    return profile


def claim_policy(
    organization: Organization, profile: DeviceProfile | None, **fields: Any
) -> EnrollmentPolicy:
    fields.setdefault("name", f"policy {secrets.token_hex(3)}")
    return enrollment_policies.policy_create(
        actor=SYSTEM, organization=organization, method="claim_token", profile=profile, **fields
    )


def claim_token(policy: EnrollmentPolicy, max_uses: int = 10, days: float = 1) -> str:
    issued = enrollment_policies.claim_token_create(
        actor=SYSTEM,
        policy=policy,
        expires_at=timezone.now() + dt.timedelta(days=days),
        max_uses=max_uses,
        label="batch",
    )
    return issued.token


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def csr_pem(key: Any, common_name: str) -> str:
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return request.public_bytes(serialization.Encoding.PEM).decode()


def weak_rsa_csr(common_name: str) -> str:
    return csr_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024), common_name)


def now_iso(offset: dt.timedelta = dt.timedelta()) -> str:
    return (timezone.now() + offset).strftime("%Y-%m-%dT%H:%M:%SZ")


def body(
    serial: str,
    *,
    token: str = "",
    key: Any = None,
    common_name: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An enrollment request with a fresh nonce and the current time."""
    data: dict[str, Any] = {
        "serial": serial,
        "nonce": secrets.token_hex(16),
        "timestamp": now_iso(),
    }
    if key is not None:
        data["csr"] = csr_pem(key, common_name or serial)
    if token:
        data["claim_token"] = token
    return data | extra


def enroll(data: dict[str, Any], client: APIClient | None = None, **meta: Any) -> Any:
    return (client or APIClient()).post(ENROLL, data, format="json", **meta)


def chain_verifies(leaf_pem: str, chain_pem: str, root_pem: str) -> bool:
    """The leaf is signed by the next certificate of the chain, and so on up to the root."""
    chain = x509.load_pem_x509_certificates(chain_pem.encode())
    root = x509.load_pem_x509_certificate(root_pem.encode())
    assert chain[0] == x509.load_pem_x509_certificate(leaf_pem.encode())
    assert chain[-1] == root
    for child, parent in itertools.pairwise(chain):
        child.verify_directly_issued_by(parent)
    return True


def common_name(pem: str) -> str:
    certificate = x509.load_pem_x509_certificate(pem.encode())
    return str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


# --- a manufacturer's factory CA (bring your own) ----------------------------------------------


class FactoryCA:
    """A manufacturer's own CA, registered with proof of possession, issuing factory
    certificates (CN = serial) for devices it makes."""

    def __init__(self, organization: Organization, name: str = "Factory CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, f"{name} {secrets.token_hex(3)}")]
        )
        self.certificate = self._sign(subject, self.key.public_key(), subject, ca=True, days=3650)
        pending = external.registration_start(actor=SYSTEM, organization=organization, name=name)
        verification_key = ec.generate_private_key(ec.SECP256R1())
        verification = self._sign(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, pending.verification_code)]),
            verification_key.public_key(),
            subject,
            ca=False,
            days=30,
        )
        self.authority: CertificateAuthority = external.registration_complete(
            actor=SYSTEM,
            authority=pending,
            certificate_pem=self.pem(self.certificate),
            verification_certificate_pem=self.pem(verification),
        )

    @staticmethod
    def pem(certificate: x509.Certificate) -> str:
        return certificate.public_bytes(serialization.Encoding.PEM).decode()

    def _sign(
        self, subject: x509.Name, public_key: Any, issuer: x509.Name, *, ca: bool, days: int
    ) -> x509.Certificate:
        now = timezone.now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
            )
        else:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        return builder.sign(self.key, hashes.SHA256())

    def device(self, serial: str, also: str = "") -> FactoryDevice:
        """A device's factory key and certificate (CN = ``serial``; subject serialNumber =
        ``also`` when given)."""
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, serial)]
        if also:
            attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, also))
        subject = x509.Name(attributes)
        certificate = self._sign(
            subject, key.public_key(), self.certificate.subject, ca=False, days=3650
        )
        return FactoryDevice(serial=serial, key=key, certificate=certificate)


class FactoryDevice:
    """A device with the factory key and certificate burnt in at manufacture."""

    def __init__(self, serial: str, key: Any, certificate: x509.Certificate) -> None:
        self.serial = serial
        self.key = key
        self.certificate = certificate

    @property
    def certificate_pem(self) -> str:
        return FactoryCA.pem(self.certificate)

    def body(
        self, operational_key: Any, common_name: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """A signed factory-certificate enrollment request for a CSR of ``operational_key``."""
        data = body(self.serial, key=operational_key, common_name=common_name)
        data["factory_certificate"] = self.certificate_pem
        data |= extra
        data["factory_signature"] = self.sign(data)
        return data

    def sign(self, data: dict[str, Any], key: Any = None) -> str:
        message = signing_string(
            serial=data["serial"],
            nonce=data["nonce"],
            timestamp=data["timestamp"],
            csr=data.get("csr", ""),
        )
        signature = (key or self.key).sign(message, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode()
