"""REST endpoints of the PKI: certificate authorities (list, bring-your-own registration with
proof of possession, revoke), device certificates (list, revoke), device tokens (create: the
token is in that response only; list, revoke), the certificate audit, and revoking everything a
device holds (``POST /devices/{id}/credentials/revoke/``).

Permissions: ``certificateauthority.*`` for CAs, ``credential.*`` for certificates and tokens
(``add`` creates a token, ``delete`` revokes). Outside the caller's scope is 404, visible
without the permission 403 (``ScopedViewSetMixin``).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.models import Organization
from apps.core.api.pagination import CursorPagination
from apps.core.api.viewsets import ScopedViewSetMixin
from apps.devices import access
from apps.devices.models import Device
from apps.devices.models_pki import CertificateAuthority, DeviceCertificate, DeviceToken
from apps.devices.pki import audit, external, services

from . import pki_serializers as s


class NewestFirst(CursorPagination):
    ordering = ("-id",)  # type: ignore[assignment]  # uuid7 ids are time-ordered


# --- certificate authorities -------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(parameters=[s.AuthorityQuerySerializer]),
    create=extend_schema(
        summary="Start registering your own CA: returns the registration code",
        request=s.RegistrationStartSerializer,
        responses={201: s.CertificateAuthoritySerializer},
    ),
)
class CertificateAuthorityViewSet(  # type: ignore[misc]
    ScopedViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The caller's organizations' CAs: their intermediates (issued here) and the CAs they
    registered (bring your own). The installation root is visible to platform staff only."""

    queryset = CertificateAuthority.objects.defer("key_encrypted", "crl_pem")
    serializer_class = s.CertificateAuthoritySerializer
    pagination_class = NewestFirst
    filter_backends = ()
    input_serializers = {
        "create": s.RegistrationStartSerializer,
        "verify": s.RegistrationCompleteSerializer,
        "revoke": s.AuthorityRevokeSerializer,
    }

    def get_queryset(self) -> QuerySet[CertificateAuthority]:
        rows = super().get_queryset()
        if self.action != "list":
            return rows
        query = s.AuthorityQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        if "kind" in data:
            rows = rows.filter(kind=data["kind"])
        if "organization" in data:
            rows = rows.filter(organization_id=self.organization_for(data["organization"]).pk)
        return rows

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        organization = self.organization_for(data["organization"])
        with transaction.atomic():
            authority = external.registration_start(
                actor=self.actor, organization=organization, name=data["name"]
            )
            self.ensure_in_scope(authority)
        return self.render(authority, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Complete a registration: upload the CA and the verification certificate",
        request=s.RegistrationCompleteSerializer,
        responses={200: s.CertificateAuthoritySerializer},
    )
    @action(detail=True, methods=["post"], scope_action="add")
    def verify(self, request: Request, pk: Any = None) -> Response:
        authority = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        authority = external.registration_complete(
            actor=self.actor,
            authority=authority,
            certificate_pem=serializer.validated_data["certificate"],
            verification_certificate_pem=serializer.validated_data["verification_certificate"],
        )
        return self.render(authority)

    @extend_schema(
        summary="Revoke a registered CA (its factory certificates are no longer recognised)",
        request=s.AuthorityRevokeSerializer,
        responses={200: s.CertificateAuthoritySerializer},
    )
    @action(detail=True, methods=["post"], scope_action="delete")
    def revoke(self, request: Request, pk: Any = None) -> Response:
        authority = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        authority = external.authority_revoke(
            actor=self.actor, authority=authority, reason=serializer.validated_data["reason"]
        )
        return self.render(authority)


# --- device certificates -----------------------------------------------------------------------


@extend_schema_view(list=extend_schema(parameters=[s.DeviceCertificateQuerySerializer]))
class DeviceCertificateViewSet(  # type: ignore[misc]
    ScopedViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Certificates bound to the caller's devices: operational ones issued here, factory ones
    presented at enrollment."""

    queryset = DeviceCertificate.objects.all()
    serializer_class = s.DeviceCertificateSerializer
    pagination_class = NewestFirst
    filter_backends = ()
    input_serializers = {"revoke": s.CredentialRevokeSerializer}

    def get_queryset(self) -> QuerySet[DeviceCertificate]:
        rows = super().get_queryset()
        if self.action != "list":
            return rows
        query = s.DeviceCertificateQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return rows.filter(**query.validated_data)

    @extend_schema(
        summary="Revoke a device certificate (the broker refuses it after its CRL reload)",
        request=s.CredentialRevokeSerializer,
        responses={200: s.DeviceCertificateSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="delete")
    def revoke(self, request: Request, pk: Any = None) -> Response:
        certificate = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        certificate = services.certificate_revoke(
            actor=self.actor, certificate=certificate, reason=serializer.validated_data["reason"]
        )
        return self.render(certificate)


# --- device tokens -----------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(parameters=[s.DeviceTokenQuerySerializer]),
    create=extend_schema(
        summary="Create a device token (shown in this response only)",
        request=s.DeviceTokenCreateSerializer,
        responses={201: s.DeviceTokenCreatedSerializer},
    ),
)
class DeviceTokenViewSet(  # type: ignore[misc]
    ScopedViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Per-device secrets for devices that cannot do TLS client authentication."""

    queryset = DeviceToken.objects.all()
    serializer_class = s.DeviceTokenSerializer
    pagination_class = NewestFirst
    filter_backends = ()
    input_serializers = {"create": s.DeviceTokenCreateSerializer}

    def get_queryset(self) -> QuerySet[DeviceToken]:
        rows = super().get_queryset()
        if self.action != "list":
            return rows
        query = s.DeviceTokenQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return rows.filter(**query.validated_data)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        device = access.access_device(actor=self.actor, device_id=data["device"])
        with transaction.atomic():
            row, token = services.device_token_create(
                actor=self.actor,
                device=device,
                label=data["label"],
                expires_at=data["expires_at"],
            )
            self.ensure_in_scope(row)
        row.token = token  # type: ignore[attr-defined]  # shown this once
        created = s.DeviceTokenCreatedSerializer(row, context=self.get_serializer_context())
        return Response(created.data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Revoke a device token", request=None, responses={200: s.DeviceTokenSerializer}
    )
    @action(detail=True, methods=["post"], scope_action="delete")
    def revoke(self, request: Request, pk: Any = None) -> Response:
        token = services.device_token_revoke(actor=self.actor, token=self.get_object())
        return self.render(token)


# --- audit and per-device revocation -----------------------------------------------------------


class CertificateAuditViewSet(ScopedViewSetMixin, viewsets.GenericViewSet):  # type: ignore[misc]
    """Findings of the certificate audit over the caller's devices (``credential.view``)."""

    queryset = DeviceCertificate.objects.all()
    serializer_class = s.CertificateFindingListSerializer
    pagination_class = None
    filter_backends = ()

    @extend_schema(
        summary="Certificate audit findings: expiring, aged, revoked but seen, shared, weak",
        parameters=[s.CertificateFindingQuerySerializer],
        responses={200: s.CertificateFindingListSerializer},
    )
    def list(self, request: Request) -> Response:
        query = s.CertificateFindingQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        path: str | None = None
        if "organization" in data:
            organization: Organization = self.organization_for(data["organization"])
            path = organization.path
        found = audit.findings(
            actor=self.actor,
            kinds=[data["kind"]] if "kind" in data else audit.KINDS,
            organization_path=path,
            limit=data["limit"],
        )
        counts = dict.fromkeys(audit.KINDS, 0)
        for finding in found:
            counts[finding.kind] += 1
        return Response(
            s.CertificateFindingListSerializer({"results": found, "counts": counts}).data
        )


class DeviceCredentialsViewSet(ScopedViewSetMixin, viewsets.GenericViewSet):  # type: ignore[misc]
    """``POST /devices/{id}/credentials/revoke/``: every certificate and token of one device."""

    queryset = DeviceCertificate.objects.all()  # the permissions are ``credential.*``
    serializer_class = s.CredentialsRevokedSerializer
    input_serializers = {"revoke": s.CredentialRevokeSerializer}
    pagination_class = None
    filter_backends = ()

    @extend_schema(
        summary="Revoke every certificate and token of a device",
        parameters=[OpenApiParameter("id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        request=s.CredentialRevokeSerializer,
        responses={200: s.CredentialsRevokedSerializer},
    )
    def revoke(self, request: Request, pk: Any = None) -> Response:
        device: Device = access.access_device(actor=self.actor, device_id=pk)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if not self.actor.has_perm("credential.delete", device.organization.path):
            raise exceptions.PermissionDenied()
        certificates, tokens = services.device_credentials_revoke(
            actor=self.actor, device=device, reason=serializer.validated_data["reason"]
        )
        body = {"device": device.pk, "certificates": certificates, "tokens": tokens}
        return Response(s.CredentialsRevokedSerializer(body).data)
