"""Device credentials: certificate authorities, device certificates, device tokens, and the
broker's view of them (``BrokerState``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.core.models import BaseModel
from apps.core.scoping import ScopedManager

from .choices import AuthorityKind, CertificateKind, CredentialStatus

__all__ = ["BrokerState", "CertificateAuthority", "DeviceCertificate", "DeviceToken"]


class CertificateAuthority(BaseModel):
    """A CA the platform signs with (the installation root, one intermediate per organization)
    or recognises (an organization's own CA, registered with proof of possession).

    Private keys are stored encrypted (``pki.keys``); registered CAs have none. The installation
    root has no organization: only platform staff see it."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=16, choices=AuthorityKind.choices)
    name = models.CharField(max_length=200)
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="children"
    )
    certificate_pem = models.TextField()
    key_encrypted = models.BinaryField(null=True, blank=True, editable=False)
    fingerprint = models.CharField(max_length=64, unique=True)  # SHA-256 of the DER, hex
    subject = models.CharField(max_length=500)
    subject_key_identifier = models.CharField(max_length=128, blank=True, db_index=True)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    verified_at = models.DateTimeField(null=True, blank=True)
    verification_code = models.CharField(max_length=64, blank=True)
    # The last CRL this CA signed (``pki.revocation``): its number (monotonic per CA), the PEM,
    # when it was signed, the revocations it lists (count and latest revocation time) and when
    # it is half way through its validity. ``crl_bundle`` re-signs only when the revocations
    # differ or that time has passed.
    crl_number = models.BigIntegerField(default=0)
    crl_pem = models.TextField(blank=True)
    crl_updated_at = models.DateTimeField(null=True, blank=True)
    crl_revocations = models.CharField(max_length=64, blank=True, editable=False)
    crl_refresh_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ScopedManager()
    scope_resource = "certificateauthority"

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind"],
                condition=models.Q(kind="root", revoked_at=None),
                name="devices_one_root_ca",
            ),
            models.UniqueConstraint(
                fields=["organization"],
                condition=models.Q(kind="intermediate", revoked_at=None),
                name="devices_one_intermediate_per_org",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class DeviceCertificate(BaseModel):
    """An X.509 certificate bound to a device: operational ones issued here from the device's
    CSR (CN = device UUID), factory ones presented at enrollment from a registered CA."""

    device = models.ForeignKey(
        "devices.Device", on_delete=models.PROTECT, related_name="certificates"
    )
    issuer = models.ForeignKey(
        CertificateAuthority, on_delete=models.PROTECT, related_name="certificates"
    )
    kind = models.CharField(
        max_length=16, choices=CertificateKind.choices, default=CertificateKind.OPERATIONAL
    )
    serial_number = models.CharField(max_length=64)  # hex
    fingerprint = models.CharField(max_length=64)  # SHA-256 of the DER, hex
    subject = models.CharField(max_length=500)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    key_algorithm = models.CharField(max_length=16)  # rsa, ec, ed25519, ed448
    key_size = models.PositiveIntegerField()  # bits (RSA modulus, EC curve size)
    signature_hash = models.CharField(max_length=16, blank=True)
    certificate_pem = models.TextField()
    status = models.CharField(
        max_length=16, choices=CredentialStatus.choices, default=CredentialStatus.ACTIVE
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revocation_reason = models.CharField(max_length=32, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    objects = ScopedManager()
    scope_resource = "credential"
    scope_organization_field = "device__organization"

    class Meta:
        ordering = ["-id"]
        constraints = [
            # A CA never reuses a serial: true of ours. A registered CA's factory certificate
            # may be recorded on several devices (a clone), which the audit flags as shared.
            models.UniqueConstraint(
                fields=["issuer", "serial_number"],
                condition=models.Q(kind="operational"),
                name="devices_cert_serial_per_issuer",
            ),
            models.UniqueConstraint(
                fields=["device", "fingerprint"], name="devices_cert_once_per_device"
            ),
        ]
        indexes = [
            models.Index(fields=["fingerprint"], name="devices_cert_fingerprint"),
            models.Index(fields=["device", "-id"], name="devices_cert_device"),
            models.Index(
                fields=["not_after"],
                condition=models.Q(status="active"),
                name="devices_cert_expiry",
            ),
            models.Index(
                fields=["issuer", "revoked_at"],
                condition=models.Q(status="revoked"),
                name="devices_cert_revoked",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject} ({self.serial_number[:16]})"


class DeviceToken(BaseModel):
    """A per-device secret for devices that cannot do TLS client authentication:
    ``fo_dev_<prefix>_<secret>``, shown once. Stored as the prefix, a SHA-256 of the whole token
    (HTTPS device API, compared in constant time) and the broker's password-file hash (MQTT
    username = device UUID, password = the token)."""

    device = models.ForeignKey("devices.Device", on_delete=models.PROTECT, related_name="tokens")
    prefix = models.CharField(max_length=16, unique=True)
    token_hash = models.CharField(max_length=64, editable=False)
    broker_hash = models.CharField(max_length=256, editable=False)
    label = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    objects = ScopedManager()
    scope_resource = "credential"
    scope_organization_field = "device__organization"

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["device", "-id"], name="devices_token_device")]

    def __str__(self) -> str:
        return f"fo_dev_{self.prefix}_…"


class BrokerState(models.Model):
    """One row: a counter bumped (``F() + 1``) in the transaction of every change the broker must
    see (a revocation, a new intermediate, a token). ``broker_sync`` rewrites the broker's CRL and
    password file, and reloads it, when the counter moved."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"broker state v{self.version}"
