"""One error envelope for every API error.

{"error": {"status": 400, "code": "invalid", "message": "...",
           "fields": {"name": ["This field is required."]}, "request_id": "..."}}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.context import get_request_id

MESSAGES = {
    400: "The request is invalid.",
    401: "Authentication credentials were not provided or are not valid.",
    403: "You do not have permission to perform this action.",
    404: "Not found.",
    405: "Method not allowed.",
    409: "The request conflicts with the current state.",
    429: "Too many requests.",
    500: "Internal server error.",
}


def envelope(
    status_code: int, code: str, message: str, fields: dict[str, Any] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status_code, "code": code, "message": message}
    if fields:
        body["fields"] = fields
    body["request_id"] = get_request_id()
    return {"error": body}


def _django_validation_fields(error: DjangoValidationError) -> dict[str, Any]:
    if hasattr(error, "error_dict"):
        return {
            ("non_field_errors" if field == NON_FIELD_ERRORS else field): [str(m) for m in messages]
            for field, messages in error.message_dict.items()
        }
    return {"non_field_errors": [str(m) for m in error.messages]}


def _flatten(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {str(key): _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_django_validation_fields(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        detail = _flatten(exc.detail)
        fields = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        response.data = envelope(response.status_code, "invalid", MESSAGES[400], fields)
        return response
    code = response.status_code
    detail = getattr(exc, "detail", None)
    error_code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    message = str(detail) if detail else MESSAGES.get(code, "Error.")
    response.data = envelope(code, str(error_code), message)
    return response


def api_error_view(status_code: int) -> Callable[..., JsonResponse]:
    """Site-level 404/500 handlers: the envelope for /api/ paths, HTML elsewhere."""

    def view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
        code = "not_found" if status_code == 404 else "error"
        return JsonResponse(envelope(status_code, code, MESSAGES[status_code]), status=status_code)

    return view
