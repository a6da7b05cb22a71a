"""The HTTPS device API (``/device/v1/``): enrollment, uploads, configuration, renewal.

Thin views: they parse the JSON, call ``enrollment`` / ``device_io`` / the credential services,
and shape the answer. Errors use the platform's one envelope; a refusal names its field when it
has one, and a rate-limited answer carries ``Retry-After``. ``docs/device-protocol.md`` is the
contract. The endpoints are left out of the OpenAPI schema (it documents ``/api/v1/``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from . import device_io
from .device_auth import DeviceAuthentication, DevicePrincipal
from .enrollment import Enrollment
from .enrollment_guard import Refused, source_address
from .enrollment_records import CERTIFICATE, TOKEN, EnrollmentRequest, EnrollmentResult
from .pki import authorities
from .pki import services as credential_services

MAX_INVENTORY_BYTES = 16_384
NONCE_PATTERN = r"^[A-Za-z0-9+/=_.-]{16,64}$"


class RefusedError(exceptions.APIException):
    """A ``Refused`` as DRF answers it (its status, code and ``Retry-After``)."""

    def __init__(self, refused: Refused) -> None:
        self.status_code = refused.status
        self.field = refused.field
        self.wait = refused.retry_after
        super().__init__(detail=refused.message, code=refused.code)


class DeviceAPIView(APIView):
    """Base of the device endpoints: device authentication, and refusals in the envelope."""

    authentication_classes: tuple[type[Any], ...] = (DeviceAuthentication,)
    permission_classes: tuple[type[Any], ...] = (permissions.IsAuthenticated,)

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, Refused):
            exc = RefusedError(exc)
        response = super().handle_exception(exc)
        field = getattr(exc, "field", "")
        if field and isinstance(response.data, dict) and "error" in response.data:
            response.data["error"]["fields"] = {field: [str(getattr(exc, "detail", ""))]}
        return response

    @property
    def device(self) -> Any:
        user = self.request.user
        if not isinstance(user, DevicePrincipal):
            raise exceptions.NotAuthenticated()
        return user.device


def _source(request: Request) -> str:
    meta = request.META
    return source_address(meta.get("REMOTE_ADDR", ""), meta.get("HTTP_X_FORWARDED_FOR", ""))


# --- enrollment --------------------------------------------------------------------------------


class EnrollSerializer(serializers.Serializer[Any]):
    serial = serializers.CharField(max_length=128)
    nonce = serializers.RegexField(
        NONCE_PATTERN, error_messages={"invalid": "16 to 64 characters of A-Z a-z 0-9 + / = _ . -"}
    )
    timestamp = serializers.CharField(max_length=40)
    csr = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    claim_token = serializers.CharField(required=False, max_length=200)
    factory_certificate = serializers.CharField(
        required=False, max_length=65_536, trim_whitespace=False
    )
    factory_signature = serializers.CharField(required=False, max_length=4096)
    credential = serializers.ChoiceField(choices=[CERTIFICATE, TOKEN], default=CERTIFICATE)
    profile = serializers.CharField(required=False, max_length=80)
    hardware_revision = serializers.CharField(required=False, max_length=64)
    inventory = serializers.JSONField(required=False)

    def validate_timestamp(self, value: str) -> str:
        try:
            parsed = parse_datetime(value)
        except ValueError:  # well formed, but no such time (a 13th month)
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise serializers.ValidationError("An ISO 8601 time with its offset, e.g. ...Z.")
        return value

    def validate_inventory(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise serializers.ValidationError("Must be an object.")
        if len(str(value)) > MAX_INVENTORY_BYTES:
            raise serializers.ValidationError(f"At most {MAX_INVENTORY_BYTES} bytes.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if bool(attrs.get("claim_token")) == bool(attrs.get("factory_certificate")):
            raise serializers.ValidationError(
                {"claim_token": "Send either a claim_token or a factory_certificate."}
            )
        if attrs.get("factory_certificate") and not attrs.get("factory_signature"):
            raise serializers.ValidationError({"factory_signature": "Required with a certificate."})
        if attrs["credential"] == CERTIFICATE and not attrs.get("csr"):
            raise serializers.ValidationError({"csr": "Required: a PEM certificate request."})
        return attrs

    def to_request(self, source: str) -> EnrollmentRequest:
        data = dict(self.validated_data)
        raw = data.pop("timestamp")
        return EnrollmentRequest(
            timestamp=parse_datetime(raw),  # type: ignore[arg-type]
            timestamp_raw=raw,
            source=source,
            **data,
        )


def _partial_request(data: Any, source: str) -> EnrollmentRequest:
    """What can be said of an invalid request, for its audit record."""
    data = data if isinstance(data, dict) else {}
    text = {key: str(data.get(key, ""))[:200] for key in ("serial", "claim_token", "credential")}
    return EnrollmentRequest(
        serial=text["serial"][:128],
        nonce="",
        timestamp=timezone.now(),
        timestamp_raw="",
        source=source,
        claim_token=text["claim_token"],
        credential=text["credential"] or CERTIFICATE,
    )


class EnrollView(DeviceAPIView):
    """``POST /device/v1/enroll``: no authentication; the proof is in the body."""

    authentication_classes = ()
    permission_classes = (permissions.AllowAny,)

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        source = _source(request)
        try:
            data = request.data
        except exceptions.ParseError as error:
            flow = Enrollment(_partial_request(None, source))
            flow.reject_input(ValidationError({"non_field_errors": [str(error.detail)]}))
        serializer = EnrollSerializer(data=data)
        if not serializer.is_valid():
            flow = Enrollment(_partial_request(data, source))
            flow.reject_input(ValidationError(_plain_errors(serializer.errors)))
        result = Enrollment(serializer.to_request(source)).run()
        headers = {"Retry-After": str(result.retry_after)} if result.retry_after else {}
        return Response(enroll_body(result), status=result.status, headers=headers)


def _plain_errors(errors: Any) -> dict[str, list[str]]:
    return {
        str(name): [
            str(message) for message in (messages if isinstance(messages, list) else [messages])
        ]
        for name, messages in errors.items()
    }


def enroll_body(result: EnrollmentResult) -> dict[str, Any]:
    device = result.device
    body: dict[str, Any] = {
        "device_id": str(device.pk),
        "state": device.state,
        "organization_id": str(device.organization_id),
    }
    if result.status == status.HTTP_202_ACCEPTED:
        return body | {"retry_after": result.retry_after}
    certificate = result.certificate
    leaf = certificate.certificate_pem if certificate else None
    body |= {
        "certificate": leaf,
        "certificate_chain": result.chain_pem or None,
        "ca_certificate": result.root_pem or authorities.root_certificate_pem(),
        "broker": {
            "host": settings.MQTT_PUBLIC_HOST,
            "port": settings.MQTT_DEVICE_PORT,
            "token_port": settings.MQTT_TOKEN_PORT,
            "tls": True,
        },
        "topics": {"prefix": f"devices/{device.pk}/"},
        "heartbeat": result.provisioning.get("heartbeat", {}),
        "configuration": result.provisioning.get("configuration", {}),
    }
    if result.token:
        body["token"] = result.token
    return body | _validity(certificate)


def _validity(certificate: Any) -> dict[str, Any]:
    if certificate is None:
        return {"renew_after": None, "expires_at": None}
    renew_after = certificate.not_after - dt.timedelta(days=settings.PKI_RENEW_BEFORE_DAYS)
    return {
        "renew_after": renew_after.isoformat().replace("+00:00", "Z"),
        "expires_at": certificate.not_after.isoformat().replace("+00:00", "Z"),
    }


# --- renewal -----------------------------------------------------------------------------------


class RenewView(DeviceAPIView):
    """``POST /device/v1/certificate/renew``: a new certificate from a CSR (CN = device id)."""

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        device = self.device
        csr = request.data.get("csr") if isinstance(request.data, dict) else None
        row, chain = credential_services.certificate_renew(
            actor=credential_services.device_actor(device), device=device, csr=csr or ""
        )
        body = {"certificate": row.certificate_pem, "certificate_chain": chain}
        return Response(body | _validity(row))


# --- uploads and configuration -----------------------------------------------------------------


class UploadView(DeviceAPIView):
    """``POST /device/v1/{heartbeat,telemetry,events}``: the MQTT payloads, queued (202)."""

    kind = ""

    @extend_schema(exclude=True)
    def post(self, request: Request) -> Response:
        size = len(request._request.body)
        if size > settings.MQTT_MAX_MESSAGE_BYTES:
            raise RefusedError(
                Refused(
                    413,
                    "too_large",
                    f"The body is {size} bytes; at most {settings.MQTT_MAX_MESSAGE_BYTES}.",
                )
            )
        messages = device_io.parse_uploads(request.data)
        accepted = device_io.uploads_accept(device=self.device, kind=self.kind, messages=messages)
        return Response({"accepted": accepted}, status=status.HTTP_202_ACCEPTED)


class ConfigView(DeviceAPIView):
    """``GET /device/v1/config``: the provisioned configuration; ``ETag`` = its checksum, 304
    when ``If-None-Match`` already names it."""

    @extend_schema(exclude=True)
    def get(self, request: Request) -> Response:
        document = device_io.configuration_document(self.device)
        etag = f'"{document["checksum"]}"'
        wanted = request.headers.get("If-None-Match", "")
        tags = {tag.strip().removeprefix("W/") for tag in wanted.split(",") if tag.strip()}
        if etag in tags or "*" in tags:
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": etag})
        return Response(document, headers={"ETag": etag, "Cache-Control": "no-cache"})
