"""Portal transfer inbox: incoming transfers to accept or reject, outgoing ones to cancel, and
claiming a device with the claim code printed on it."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.models import Organization
from apps.accounts.portal import organization_for, require_perm
from apps.core.scoping import ancestor_ids, organization_ids_under

from .choices import TransferStatus
from .models import Transfer
from .views_fleet import actor_of
from .views_fleet_forms import ClaimForm

LIST_LIMIT = 100
DECISIONS = ("accept", "reject", "cancel")


def _incoming(organization: Organization) -> QuerySet[Transfer]:
    # The receiver's view: Transfer's scoping follows the sender, so the inbox filters on the
    # receiving subtree that organization_for already checked.
    return Transfer.objects.filter(
        to_organization__in=organization_ids_under([organization.path]),
        status=TransferStatus.PENDING,
    )


def _outgoing(actor: Any, organization: Organization) -> QuerySet[Transfer]:
    return Transfer.objects.for_actor(actor, "view").filter(
        from_organization__in=organization_ids_under([organization.path]),
        status=TransferStatus.PENDING,
    )


def _manufacturers(organization: Organization) -> list[Organization]:
    """Manufacturers a device can be claimed from: this organization and its ancestors."""
    ids = [*ancestor_ids([organization.path]), organization.pk]
    return list(
        Organization.objects.filter(pk__in=ids, kind=Organization.Kind.MANUFACTURER).order_by(
            "depth"
        )
    )


def _related(queryset: QuerySet[Transfer]) -> list[Transfer]:
    return list(
        queryset.select_related(
            "device", "from_organization", "to_organization", "created_by"
        ).order_by("-created_at")[:LIST_LIMIT]
    )


def _page(
    request: HttpRequest, organization: Organization, form: ClaimForm, status: int = 200
) -> HttpResponse:
    actor = actor_of(request)
    context = {
        "organization": organization,
        "incoming": _related(_incoming(organization)),
        "outgoing": _related(_outgoing(actor, organization)),
        "can_transfer": actor.has_perm("device.transfer", organization.path),
        "claim_form": form,
    }
    return render(request, "devices/transfers.html", context, status=status)


@login_required
def transfers(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    organization = organization_for(request, organization_id, "device.view")
    return _page(request, organization, ClaimForm(manufacturers=_manufacturers(organization)))


def _transfer_for(
    organization: Organization, actor: Any, transfer_id: uuid.UUID, decision: str
) -> Transfer:
    queryset = _outgoing(actor, organization) if decision == "cancel" else _incoming(organization)
    transfer = queryset.select_related("device", "to_organization").filter(pk=transfer_id).first()
    if transfer is None:
        raise Http404("No such transfer.")
    return transfer


@login_required
@require_POST
def transfer_decide(
    request: HttpRequest, organization_id: uuid.UUID, transfer_id: uuid.UUID, decision: str
) -> HttpResponse:
    from . import transfers

    if decision not in DECISIONS:
        raise Http404("No such decision.")
    actor = actor_of(request)
    organization = organization_for(request, organization_id, "device.view")
    transfer = _transfer_for(organization, actor, transfer_id, decision)
    require_perm(actor, "device.transfer", organization)
    service = getattr(transfers, f"transfer_{decision}")
    try:
        service(actor=actor, transfer=transfer)
    except ValidationError as invalid:
        messages.error(request, f"{transfer.device.serial}: {' '.join(invalid.messages)}")
        return redirect("fleet:transfers", organization_id=organization.pk)
    past = {"accept": "accepted", "reject": "rejected", "cancel": "cancelled"}[decision]
    messages.success(request, f"Transfer of {transfer.device.serial} {past}.")
    return redirect("fleet:transfers", organization_id=organization.pk)


@login_required
@require_POST
def claim(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    from . import transfers

    actor = actor_of(request)
    organization = organization_for(request, organization_id, "device.view")
    require_perm(actor, "device.transfer", organization)
    form = ClaimForm(request.POST, manufacturers=_manufacturers(organization))
    if not form.is_valid():
        return _page(request, organization, form, status=400)
    try:
        device = transfers.device_claim(
            actor=actor,
            organization=organization,
            manufacturer_id=uuid.UUID(form.cleaned_data["manufacturer"]),
            serial=form.cleaned_data["serial"],
            claim_code=form.cleaned_data["claim_code"],
        )
    except ValidationError as invalid:
        form.add_error(None, " ".join(invalid.messages))
        return _page(request, organization, form, status=400)
    messages.success(request, f"{device.serial} now belongs to {organization.name}.")
    return redirect("fleet:device", organization_id=organization.pk, device_id=device.pk)
