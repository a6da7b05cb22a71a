"""The CAs the platform signs with: the installation root and one intermediate per organization.

The root comes from configuration (``PKI_ROOT_CERT_FILE``/``PKI_ROOT_KEY_FILE``) or is generated
on first use; either way its key is kept encrypted in the database. Intermediates are created on
first use, signed by the root, valid for ten years; each publishes its own CRL (``revocation``).

Signers are cached per process (``SIGNER_CACHE_SIZE`` CAs, least recently used out): decrypting
a key, loading the certificate and walking the chain up to the root happen once per CA, not at
every enrollment. The CA row itself is still read every time (the one query ``root()`` and
``intermediate()`` make), and the cache key is that row's id, certificate fingerprint,
``updated_at`` and parent: a CA that is revoked is no longer found, one that is replaced is
another row, and one changed in place is another key, so a stale signer is never used.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ..choices import AuthorityKind
from ..models_pki import CertificateAuthority
from . import certs, keys

if TYPE_CHECKING:
    from apps.accounts.models import Organization

ROOT_DAYS = 20 * 365
INTERMEDIATE_DAYS = 10 * 365
BACKDATE = dt.timedelta(minutes=5)  # tolerate clocks a little behind ours
SIGNER_CACHE_SIZE = 256
# What a signing lookup reads of a CA row: the (possibly large) CRL stays in the database, and
# the encrypted key is read only when the signer is not cached yet.
LOOKUP_DEFERRED = ("key_encrypted", "crl_pem")


@dataclass(frozen=True)
class Signer:
    """A CA ready to sign: its row, its certificate and its private key; ``chain`` is its
    certificate and its parents' up to the root, and ``root_pem`` the installation's current
    root when the lookup read it (``root()``, ``intermediate()``), else ""."""

    authority: CertificateAuthority
    certificate: x509.Certificate
    key: Any
    chain: str = ""
    root_pem: str = ""

    def chain_pem(self) -> str:
        """This CA's certificate and its parents', up to and including the root."""
        return self.chain or chain_pem(self.authority)


@dataclass(frozen=True)
class _Loaded:
    certificate: x509.Certificate
    key: Any
    chain: str


class SignerCache:
    """A small thread-safe LRU map (daphne may run views in several threads)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, _Loaded] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> _Loaded | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: Hashable, value: _Loaded) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


signers = SignerCache(SIGNER_CACHE_SIZE)


def cache_key(authority: CertificateAuthority) -> tuple[Any, ...]:
    """What identifies a CA's signing material: a change to any of these is another entry."""
    return (authority.pk, authority.fingerprint, authority.updated_at, authority.parent_id)


def chain_pem(authority: CertificateAuthority | None) -> str:
    """``authority``'s certificate and its parents', up to and including the root."""
    parts: list[str] = []
    while authority is not None:
        parts.append(authority.certificate_pem)
        authority = authority.parent
    return "".join(parts)


def signer(authority: CertificateAuthority, *, root: CertificateAuthority | None = None) -> Signer:
    """``authority`` ready to sign, its key and certificate from the per-process cache when its
    row is unchanged. ``root``: the current root's row when the caller read it along (its
    certificate is then ``Signer.root_pem``, and the chain's top when it is the parent)."""
    key = cache_key(authority)
    loaded = signers.get(key)
    if loaded is None:
        encrypted = authority.key_encrypted  # deferred by the lookups: read on a miss only
        if encrypted is None:
            raise ValueError(f"{authority} has no private key here (a registered CA).")
        loaded = _Loaded(
            certs.load_pem(authority.certificate_pem), keys.decrypt(encrypted), chain_pem(authority)
        )
        signers.put(key, loaded)
    chain, root_pem = loaded.chain, ""
    if root is not None:
        root_pem = root.certificate_pem
        if authority.parent_id == root.pk:  # the usual chain, from the rows just read
            chain = authority.certificate_pem + root_pem
    return Signer(authority, loaded.certificate, loaded.key, chain, root_pem)


def _current_root() -> CertificateAuthority | None:
    return (
        CertificateAuthority.objects.filter(kind=AuthorityKind.ROOT, revoked_at=None)
        .defer(*LOOKUP_DEFERRED)
        .first()
    )


def root() -> Signer:
    """The installation root, created (or imported from configuration) on first use."""
    found = _current_root() or _create_root()
    return signer(found, root=found)


def root_certificate_pem() -> str:
    """The installation root's certificate (what devices verify the broker with)."""
    pem = (
        CertificateAuthority.objects.filter(kind=AuthorityKind.ROOT, revoked_at=None)
        .values_list("certificate_pem", flat=True)
        .first()
    )
    return pem if pem is not None else root().authority.certificate_pem


def _create_root() -> CertificateAuthority:
    certificate, key = _configured_root() or _generated_root()
    try:
        with transaction.atomic():
            return _save(AuthorityKind.ROOT, "Fleetops installation root", certificate, key)
    except IntegrityError:  # another process created it first
        return CertificateAuthority.objects.get(kind=AuthorityKind.ROOT, revoked_at=None)


def _configured_root() -> tuple[x509.Certificate, Any] | None:
    if not (settings.PKI_ROOT_CERT_FILE and settings.PKI_ROOT_KEY_FILE):
        return None
    certificate = certs.load_pem(Path(settings.PKI_ROOT_CERT_FILE).read_bytes())
    passphrase = settings.PKI_ROOT_KEY_PASSPHRASE.encode() or None
    key = serialization.load_pem_private_key(
        Path(settings.PKI_ROOT_KEY_FILE).read_bytes(), password=passphrase
    )
    return certificate, key


def _generated_root() -> tuple[x509.Certificate, Any]:
    key = keys.generate()
    subject = certs.name("Fleetops installation root CA", "Fleetops")
    certificate = ca_certificate(subject, key.public_key(), subject, key, ROOT_DAYS, path_length=1)
    return certificate, key


def ca_certificate(
    subject: x509.Name,
    public_key: Any,
    issuer: x509.Name,
    issuer_key: Any,
    days: int,
    path_length: int | None = 0,
) -> x509.Certificate:
    """A CA certificate (basic constraints CA, key usage cert + CRL signing)."""
    now = timezone.now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


def _save(
    kind: str,
    label: str,
    certificate: x509.Certificate,
    key: Any,
    *,
    organization: Organization | None = None,
    parent: CertificateAuthority | None = None,
) -> CertificateAuthority:
    facts = certs.facts(certificate)
    return CertificateAuthority.objects.create(
        organization=organization,
        kind=kind,
        name=label,
        parent=parent,
        certificate_pem=certs.to_pem(certificate),
        key_encrypted=keys.encrypt(key),
        fingerprint=facts.fingerprint,
        subject=facts.subject,
        subject_key_identifier=certs.subject_key_identifier(certificate),
        not_before=facts.not_before,
        not_after=facts.not_after,
        verified_at=timezone.now(),
    )


def intermediate(organization: Organization) -> Signer:
    """The organization's intermediate CA, created under the root on first use. The same query
    reads the current root's certificate (``Signer.root_pem``): an enrollment hands it out."""
    rows = list(
        CertificateAuthority.objects.filter(
            Q(organization=organization, kind=AuthorityKind.INTERMEDIATE)
            | Q(kind=AuthorityKind.ROOT),
            revoked_at=None,
        ).defer(*LOOKUP_DEFERRED)
    )
    found = next((row for row in rows if row.kind == AuthorityKind.INTERMEDIATE), None)
    current_root = next((row for row in rows if row.kind == AuthorityKind.ROOT), None)
    if found is None:
        found = _create_intermediate(organization)
        current_root = found.parent
    return signer(found, root=current_root)


def _create_intermediate(organization: Organization) -> CertificateAuthority:
    from .revocation import bump_broker_state

    parent = root()
    key = keys.generate()
    subject = certs.name(f"{organization.name} devices CA {organization.pk}", "Fleetops")
    certificate = ca_certificate(
        subject, key.public_key(), parent.certificate.subject, parent.key, INTERMEDIATE_DAYS
    )
    try:
        with transaction.atomic():
            created = _save(
                AuthorityKind.INTERMEDIATE,
                f"{organization.name} devices CA",
                certificate,
                key,
                organization=organization,
                parent=parent.authority,
            )
            bump_broker_state()  # the broker needs this CA's CRL before its devices connect
            return created
    except IntegrityError:
        return CertificateAuthority.objects.get(
            organization=organization, kind=AuthorityKind.INTERMEDIATE, revoked_at=None
        )
