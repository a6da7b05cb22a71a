"""Serializers of the PKI endpoints (``api/pki.py``). No private key material is ever
serialized: CA keys stay in the database, encrypted; tokens are shown once, at creation."""

from __future__ import annotations

import datetime as dt
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.api.serializers import IdField
from apps.devices.choices import AuthorityKind, CertificateKind, CredentialStatus
from apps.devices.models_pki import CertificateAuthority, DeviceCertificate, DeviceToken
from apps.devices.pki import audit, external, services

# --- certificate authorities -------------------------------------------------------------------


class CertificateAuthoritySerializer(serializers.ModelSerializer[CertificateAuthority]):
    """A CA. Pending registrations have no certificate yet: their certificate fields are null
    and they carry the registration code to sign a verification certificate with."""

    status = serializers.SerializerMethodField()
    subject = serializers.SerializerMethodField()
    fingerprint = serializers.SerializerMethodField()
    not_before = serializers.SerializerMethodField()
    not_after = serializers.SerializerMethodField()
    certificate_pem = serializers.SerializerMethodField()
    registration_code = serializers.SerializerMethodField()
    registration_expires_at = serializers.SerializerMethodField()

    class Meta:
        model = CertificateAuthority
        fields = [
            "id",
            "organization",
            "kind",
            "name",
            "status",
            "parent",
            "subject",
            "fingerprint",
            "subject_key_identifier",
            "not_before",
            "not_after",
            "verified_at",
            "revoked_at",
            "crl_number",
            "crl_updated_at",
            "certificate_pem",
            "registration_code",
            "registration_expires_at",
            "created_at",
        ]
        read_only_fields = fields

    def _certified(self, authority: CertificateAuthority) -> bool:
        return bool(authority.certificate_pem)

    @extend_schema_field(serializers.ChoiceField(choices=external.STATUSES))
    def get_status(self, authority: CertificateAuthority) -> str:
        return external.authority_status(authority)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_subject(self, authority: CertificateAuthority) -> str | None:
        return authority.subject if self._certified(authority) else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_fingerprint(self, authority: CertificateAuthority) -> str | None:
        return authority.fingerprint if self._certified(authority) else None

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_not_before(self, authority: CertificateAuthority) -> str | None:
        return _iso(authority.not_before) if self._certified(authority) else None

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_not_after(self, authority: CertificateAuthority) -> str | None:
        return _iso(authority.not_after) if self._certified(authority) else None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_certificate_pem(self, authority: CertificateAuthority) -> str | None:
        return authority.certificate_pem or None

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_registration_code(self, authority: CertificateAuthority) -> str | None:
        return authority.verification_code if external.is_pending(authority) else None

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_registration_expires_at(self, authority: CertificateAuthority) -> str | None:
        if not external.is_pending(authority):
            return None
        return _iso(external.registration_expires_at(authority))


def _iso(value: dt.datetime) -> str:
    return serializers.DateTimeField().to_representation(value)  # type: ignore[no-any-return]


class AuthorityQuerySerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(choices=AuthorityKind.choices, required=False)
    organization = serializers.UUIDField(required=False)


class RegistrationStartSerializer(serializers.Serializer[Any]):
    organization = IdField(help_text="The organization registering its CA.")
    name = serializers.CharField(max_length=200)


class RegistrationCompleteSerializer(serializers.Serializer[Any]):
    certificate = serializers.CharField(
        max_length=external.MAX_PEM_BYTES, help_text="The CA certificate (PEM)."
    )
    verification_certificate = serializers.CharField(
        max_length=external.MAX_PEM_BYTES,
        help_text="A certificate with CN = the registration code, signed by the CA's key (PEM).",
    )


class AuthorityRevokeSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


# --- device certificates -----------------------------------------------------------------------


class DeviceCertificateSerializer(serializers.ModelSerializer[DeviceCertificate]):
    class Meta:
        model = DeviceCertificate
        fields = [
            "id",
            "device",
            "issuer",
            "kind",
            "status",
            "serial_number",
            "fingerprint",
            "subject",
            "not_before",
            "not_after",
            "key_algorithm",
            "key_size",
            "signature_hash",
            "revoked_at",
            "revocation_reason",
            "last_seen_at",
            "certificate_pem",
            "created_at",
        ]
        read_only_fields = fields


class DeviceCertificateQuerySerializer(serializers.Serializer[Any]):
    device = serializers.UUIDField(required=False)
    status = serializers.ChoiceField(choices=CredentialStatus.choices, required=False)
    kind = serializers.ChoiceField(choices=CertificateKind.choices, required=False)


class CredentialRevokeSerializer(serializers.Serializer[Any]):
    reason = serializers.ChoiceField(choices=services.REVOCATION_REASONS, default="unspecified")


class CredentialsRevokedSerializer(serializers.Serializer[Any]):
    device = serializers.UUIDField()
    certificates = serializers.IntegerField(help_text="Certificates revoked by this call.")
    tokens = serializers.IntegerField(help_text="Tokens revoked by this call.")


# --- device tokens -----------------------------------------------------------------------------


class DeviceTokenSerializer(serializers.ModelSerializer[DeviceToken]):
    status = serializers.SerializerMethodField()

    class Meta:
        model = DeviceToken
        fields = [
            "id",
            "device",
            "prefix",
            "label",
            "status",
            "created_by",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "created_at",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=services.TOKEN_STATUSES))
    def get_status(self, token: DeviceToken) -> str:
        return services.token_status(token)


class DeviceTokenCreatedSerializer(DeviceTokenSerializer):
    token = serializers.CharField(
        read_only=True,
        help_text="fo_dev_<prefix>_<secret>: shown in this response only. The device sends it "
        "as its MQTT password (username = device id) or as `Authorization: Bearer`.",
    )

    class Meta(DeviceTokenSerializer.Meta):
        fields = [*DeviceTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class DeviceTokenCreateSerializer(serializers.Serializer[Any]):
    device = IdField()
    label = serializers.CharField(  # type: ignore[assignment]  # not Field.label
        max_length=100, required=False, allow_blank=True, default=""
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)


class DeviceTokenQuerySerializer(serializers.Serializer[Any]):
    device = serializers.UUIDField(required=False)


# --- audit -------------------------------------------------------------------------------------


class CertificateFindingSerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(choices=audit.KINDS)
    certificate_id = serializers.UUIDField(allow_null=True)
    device_id = serializers.UUIDField()
    organization_id = serializers.UUIDField()
    serial = serializers.CharField(help_text="The device's serial number.")
    detail = serializers.CharField()


class CertificateFindingListSerializer(serializers.Serializer[Any]):
    results = CertificateFindingSerializer(many=True)
    counts = serializers.DictField(
        child=serializers.IntegerField(), help_text="Findings returned, per kind."
    )


class CertificateFindingQuerySerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(choices=audit.KINDS, required=False)
    organization = serializers.UUIDField(required=False, help_text="Only this subtree.")
    limit = serializers.IntegerField(
        min_value=1, max_value=5000, default=audit.DEFAULT_LIMIT, help_text="Findings per kind."
    )
