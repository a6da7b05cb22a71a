"""Portal pages of the PKI: the organization's certificate authorities (its intermediate and
the CAs it registered), bring-your-own CA registration with proof of possession, the certificate
audit, and the device page's credentials panel (certificates, tokens, revocation).

Every page names its organization in the URL; outside the actor's view is 404, visible without
the permission 403. Writes call the PKI services with ``actor=request.actor``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Sum
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.models import Organization
from apps.accounts.portal import organization_for, require_perm
from apps.core.scoping import organization_ids_under

from .choices import AuthorityKind
from .models import BrokerRefusal, Device, RefusalReason
from .models_pki import CertificateAuthority, DeviceCertificate, DeviceToken
from .pki import audit, external, services
from .views_fleet import actor_of
from .views_fleet_device import _device_for

FINDINGS_SHOWN = 100  # per kind
REFUSALS_SHOWN = 50
CREDENTIALS_SHOWN = 50
TOKEN_SESSION_KEY = "device_token_{}"
REASON_CHOICES = [
    (reason, reason.replace("_", " ").capitalize()) for reason in services.REVOCATION_REASONS
]


class RegistrationForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="For example: Acme factory CA 2026.")


class VerifyForm(forms.Form):
    certificate = forms.CharField(
        label="CA certificate (PEM)",
        max_length=external.MAX_PEM_BYTES,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
    )
    verification_certificate = forms.CharField(
        label="Verification certificate (PEM)",
        max_length=external.MAX_PEM_BYTES,
        widget=forms.Textarea(attrs={"rows": 8, "spellcheck": "false"}),
    )


class TokenForm(forms.Form):
    label = forms.CharField(max_length=100, required=False)
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, help_text="Empty: never expires."
    )

    def expires_at(self) -> dt.datetime | None:
        days = self.cleaned_data.get("expires_in_days")
        return timezone.now() + dt.timedelta(days=days) if days else None


class RevokeForm(forms.Form):
    reason = forms.ChoiceField(choices=REASON_CHOICES, initial="unspecified")


def _apply_errors(form: forms.Form, error: ValidationError) -> None:
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, messages_ in error.message_dict.items():
        form.add_error(field if field in form.fields else None, messages_)


# --- certificate authorities and the audit -----------------------------------------------------


def _authorities(actor: Any, organization: Organization) -> list[CertificateAuthority]:
    visible = CertificateAuthority.objects.for_actor(actor, "view").defer(
        "key_encrypted", "crl_pem"
    )
    subtree = visible.filter(organization__in=organization_ids_under([organization.path]))
    return list(subtree.select_related("organization").order_by("kind", "name", "id")[:200])


def _root() -> CertificateAuthority | None:
    # The root's certificate is public (every device receives it); never its key.
    return (
        CertificateAuthority.objects.filter(kind=AuthorityKind.ROOT, revoked_at=None)
        .defer("key_encrypted", "crl_pem")
        .first()
    )


def _findings(actor: Any, organization: Organization, kind: str) -> list[audit.Finding]:
    kinds = [kind] if kind in audit.KINDS else audit.KINDS
    return audit.findings(
        actor=actor, kinds=kinds, organization_path=organization.path, limit=FINDINGS_SHOWN
    )


def _certificates_page(
    request: HttpRequest, organization: Organization, form: RegistrationForm, status: int = 200
) -> HttpResponse:
    actor = actor_of(request)
    kind = request.GET.get("kind", "")
    found = _findings(actor, organization, kind)
    authorities = _authorities(actor, organization)
    for authority in authorities:
        authority.status = external.authority_status(authority)  # type: ignore[attr-defined]
    context = {
        "organization": organization,
        "root": _root(),
        "authorities": authorities,
        "findings": found,
        "finding_kinds": list(audit.LABELS.items()),
        "kind": kind if kind in audit.KINDS else "",
        "can_register": actor.has_perm("certificateauthority.add", organization.path),
        "can_revoke": actor.has_perm("certificateauthority.delete", organization.path),
        "form": form,
        **_refusals(actor, organization),
    }
    return render(request, "devices/pki/certificates.html", context, status=status)


def _refusals(actor: Any, organization: Organization) -> dict[str, Any]:
    """The last day's broker refusals of the organization's devices (subtree), newest first,
    and their totals per reason."""
    rows = BrokerRefusal.objects.for_actor(actor, "view").filter(
        organization__path__startswith=organization.path,
        received_at__gte=timezone.now() - dt.timedelta(days=1),
    )
    totals = rows.order_by().values_list("reason").annotate(total=Sum("count"))
    labels = dict(RefusalReason.choices)
    return {
        "refusals": list(rows.select_related("device")[:REFUSALS_SHOWN]),
        "refusal_totals": sorted((labels[reason], total) for reason, total in totals),
    }


@login_required
def certificates(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    organization = organization_for(request, organization_id, "credential.view")
    return _certificates_page(request, organization, RegistrationForm())


@login_required
@require_POST
def authority_register(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    """Start a bring-your-own CA registration; the next page shows the registration code."""
    actor = actor_of(request)
    organization = organization_for(request, organization_id, "credential.view")
    require_perm(actor, "certificateauthority.add", organization)
    form = RegistrationForm(request.POST)
    if not form.is_valid():
        return _certificates_page(request, organization, form, status=400)
    authority = external.registration_start(
        actor=actor, organization=organization, name=form.cleaned_data["name"]
    )
    return redirect("fleet:authority", organization_id=organization.pk, authority_id=authority.pk)


def _authority_for(
    actor: Any, organization: Organization, authority_id: uuid.UUID
) -> CertificateAuthority:
    authority = (
        CertificateAuthority.objects.for_actor(actor, "view")
        .filter(organization__in=organization_ids_under([organization.path]), pk=authority_id)
        .defer("key_encrypted", "crl_pem")
        .first()
    )
    if authority is None:
        raise Http404("No such certificate authority.")
    return authority


@login_required
@require_http_methods(["GET", "POST"])
def authority_detail(
    request: HttpRequest, organization_id: uuid.UUID, authority_id: uuid.UUID
) -> HttpResponse:
    """A CA; for a pending registration, the code, the openssl commands and the upload form."""
    actor = actor_of(request)
    organization = organization_for(request, organization_id, "credential.view")
    authority = _authority_for(actor, organization, authority_id)
    form = VerifyForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        require_perm(actor, "certificateauthority.add", organization)
        if form.is_valid():
            try:
                external.registration_complete(
                    actor=actor,
                    authority=authority,
                    certificate_pem=form.cleaned_data["certificate"],
                    verification_certificate_pem=form.cleaned_data["verification_certificate"],
                )
            except ValidationError as error:
                _apply_errors(form, error)
            else:
                messages.success(request, f"{authority.name} is verified and registered.")
                return redirect("fleet:certificates", organization_id=organization.pk)
    context = {
        "organization": organization,
        "authority": authority,
        "status": external.authority_status(authority),
        "pending": external.is_pending(authority),
        "expires_at": external.registration_expires_at(authority),
        "form": form,
        "can_register": actor.has_perm("certificateauthority.add", organization.path),
        "can_revoke": actor.has_perm("certificateauthority.delete", organization.path),
    }
    status = 400 if form.errors else 200
    return render(request, "devices/pki/authority.html", context, status=status)


@login_required
@require_POST
def authority_revoke(
    request: HttpRequest, organization_id: uuid.UUID, authority_id: uuid.UUID
) -> HttpResponse:
    actor = actor_of(request)
    organization = organization_for(request, organization_id, "credential.view")
    authority = _authority_for(actor, organization, authority_id)
    require_perm(actor, "certificateauthority.delete", organization)
    try:
        external.authority_revoke(actor=actor, authority=authority)
    except ValidationError as error:
        messages.error(request, f"{authority.name}: {' '.join(error.messages)}")
    else:
        messages.success(request, f"{authority.name} was revoked.")
    return redirect("fleet:certificates", organization_id=organization.pk)


# --- the device page's credentials panel -------------------------------------------------------


def credentials_context(actor: Any, device: Device) -> dict[str, Any]:
    """The credentials panel of the device page (empty when the actor may not see them)."""
    path = device.organization.path
    if not actor.has_perm("credential.view", path):
        return {"visible": False}
    certificates = (
        DeviceCertificate.objects.for_actor(actor, "view")
        .filter(device=device)
        .select_related("issuer")
        .defer("certificate_pem", "issuer__certificate_pem", "issuer__key_encrypted")
        .order_by("-id")[:CREDENTIALS_SHOWN]
    )
    device_tokens = (
        DeviceToken.objects.for_actor(actor, "view").filter(device=device).order_by("-id")
    )
    return {
        "visible": True,
        "certificates": list(certificates),
        "tokens": list(device_tokens[:CREDENTIALS_SHOWN]),
        "can_add": actor.has_perm("credential.add", path),
        "can_revoke": actor.has_perm("credential.delete", path),
        "token_form": TokenForm(),
        "revoke_form": RevokeForm(),
    }


def _device(request: HttpRequest, organization_id: uuid.UUID, device_id: uuid.UUID) -> Device:
    """The device of the URL: 404 outside the actor's view."""
    organization = organization_for(request, organization_id, "device.view")
    return _device_for(request, organization, device_id)


def _back(organization_id: uuid.UUID, device: Device) -> HttpResponse:
    return redirect("fleet:device", organization_id=organization_id, device_id=device.pk)


def _reason(request: HttpRequest) -> str:
    form = RevokeForm(request.POST)
    return form.cleaned_data["reason"] if form.is_valid() else "unspecified"


@login_required
@require_POST
def device_credentials_revoke(
    request: HttpRequest, organization_id: uuid.UUID, device_id: uuid.UUID
) -> HttpResponse:
    actor = actor_of(request)
    device = _device(request, organization_id, device_id)
    require_perm(actor, "credential.delete", device.organization)
    certificates, device_tokens = services.device_credentials_revoke(
        actor=actor, device=device, reason=_reason(request)
    )
    messages.success(
        request,
        f"{device.serial}: {certificates} certificate(s) and {device_tokens} token(s) revoked.",
    )
    return _back(organization_id, device)


@login_required
@require_POST
def device_certificate_revoke(
    request: HttpRequest,
    organization_id: uuid.UUID,
    device_id: uuid.UUID,
    certificate_id: uuid.UUID,
) -> HttpResponse:
    actor = actor_of(request)
    device = _device(request, organization_id, device_id)
    certificate = (
        DeviceCertificate.objects.for_actor(actor, "view")
        .filter(device=device, pk=certificate_id)
        .first()
    )
    if certificate is None:
        raise Http404("No such certificate.")
    require_perm(actor, "credential.delete", device.organization)
    try:
        services.certificate_revoke(actor=actor, certificate=certificate, reason=_reason(request))
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Certificate {certificate.serial_number[:16]}… revoked.")
    return _back(organization_id, device)


@login_required
@require_POST
def device_token_create(
    request: HttpRequest, organization_id: uuid.UUID, device_id: uuid.UUID
) -> HttpResponse:
    """Create a token; the next page shows it once (it leaves the session as it is shown)."""
    actor = actor_of(request)
    device = _device(request, organization_id, device_id)
    require_perm(actor, "credential.add", device.organization)
    form = TokenForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The token's expiry must be between 1 and 3650 days.")
        return _back(organization_id, device)
    try:
        row, token = services.device_token_create(
            actor=actor,
            device=device,
            label=form.cleaned_data["label"],
            expires_at=form.expires_at(),
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return _back(organization_id, device)
    request.session[TOKEN_SESSION_KEY.format(row.pk)] = token
    return redirect(
        "fleet:device-token-created",
        organization_id=organization_id,
        device_id=device.pk,
        token_id=row.pk,
    )


@login_required
def device_token_created(
    request: HttpRequest, organization_id: uuid.UUID, device_id: uuid.UUID, token_id: uuid.UUID
) -> HttpResponse:
    actor = actor_of(request)
    device = _device(request, organization_id, device_id)
    row = DeviceToken.objects.for_actor(actor, "view").filter(device=device, pk=token_id).first()
    if row is None:
        raise Http404("No such token.")
    token = request.session.pop(TOKEN_SESSION_KEY.format(row.pk), None)
    organization = organization_for(request, organization_id, "device.view")
    context = {"organization": organization, "device": device, "device_token": row, "token": token}
    response = render(request, "devices/pki/token_created.html", context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def device_token_revoke(
    request: HttpRequest, organization_id: uuid.UUID, device_id: uuid.UUID, token_id: uuid.UUID
) -> HttpResponse:
    actor = actor_of(request)
    device = _device(request, organization_id, device_id)
    row = DeviceToken.objects.for_actor(actor, "view").filter(device=device, pk=token_id).first()
    if row is None:
        raise Http404("No such token.")
    require_perm(actor, "credential.delete", device.organization)
    try:
        services.device_token_revoke(actor=actor, token=row)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        messages.success(request, f"Token fo_dev_{row.prefix}_… revoked.")
    return _back(organization_id, device)
