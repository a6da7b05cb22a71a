"""Portal pages of zero-touch provisioning (namespace ``enrollment``): enrollment policies and
their claim tokens.

The list page names its organization (``/o/<id>/enrollment/``): outside the actor's view 404,
without ``enrollmentpolicy.view`` there 403. A policy is reached by id through ``for_actor``.
A new claim token's secret is shown once: it leaves the session as the page renders.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.forms import apply_service_error
from apps.accounts.models import User
from apps.accounts.portal import organization_for, set_current_organization
from apps.core.actors import Actor
from apps.core.scoping import organization_ids_under

from . import enrollment_policies
from .forms_enrollment import ClaimTokenForm, PolicyForm
from .models import ClaimToken, EnrollmentPolicy

TOKEN_SESSION_KEY = "claim_token_{}"


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


def _policies(actor: Actor) -> Any:
    return EnrollmentPolicy.objects.for_actor(actor, "view").select_related(
        "organization", "target_organization", "profile"
    )


def _policy_for(
    request: HttpRequest, policy_id: uuid.UUID, permission: str = ""
) -> EnrollmentPolicy:
    policy: EnrollmentPolicy = get_object_or_404(_policies(_actor(request)), pk=policy_id)
    if permission and not _actor(request).has_perm(permission, policy.organization.path):
        raise PermissionDenied
    set_current_organization(request, policy.organization)
    return policy


@login_required
def policy_list(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "enrollmentpolicy.view")
    live = Q(tokens__revoked_at=None, tokens__expires_at__gt=timezone.now())
    policies = (
        _policies(actor)
        .filter(organization__in=organization_ids_under([organization.path]))
        .annotate(live_tokens=Count("tokens", filter=live))
        .order_by("name", "id")
    )
    context = {
        "organization": organization,
        "policies": policies,
        "can_add": actor.has_perm("enrollmentpolicy.add", organization.path),
    }
    return render(request, "devices/enrollment_list.html", context)


def _form_page(
    request: HttpRequest, form: PolicyForm, organization: Any, policy: EnrollmentPolicy | None
) -> HttpResponse:
    context = {"organization": organization, "form": form, "policy": policy}
    status = 400 if form.errors else 200
    return render(request, "devices/enrollment_form.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def policy_create(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "enrollmentpolicy.add")
    initial = {"target_organization": str(organization.pk), "enabled": True}
    form = PolicyForm(request.POST or None, initial=initial)
    form.limit(actor, organization)
    if request.method == "POST" and form.is_valid():
        try:
            policy = enrollment_policies.policy_create(
                actor=actor, organization=organization, **form.service_fields()
            )
        except ValidationError as error:
            apply_service_error(form, error)
        else:
            messages.success(request, f"Enrollment policy {policy.name} created.")
            return redirect("enrollment:detail", policy_id=policy.pk)
    return _form_page(request, form, organization, None)


@login_required
@require_http_methods(["GET", "POST"])
def policy_edit(request: HttpRequest, policy_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    policy = _policy_for(request, policy_id, "enrollmentpolicy.change")
    form = PolicyForm(request.POST or None, initial=PolicyForm.initial_for(policy))
    form.limit(actor, policy.organization)
    if request.method == "POST" and form.is_valid():
        try:
            enrollment_policies.policy_update(actor=actor, policy=policy, **form.service_fields())
        except ValidationError as error:
            apply_service_error(form, error)
        else:
            messages.success(request, f"{form.cleaned_data['name']} saved.")
            return redirect("enrollment:detail", policy_id=policy.pk)
    return _form_page(request, form, policy.organization, policy)


def _detail(
    request: HttpRequest, policy: EnrollmentPolicy, token_form: ClaimTokenForm, status: int = 200
) -> HttpResponse:
    actor = _actor(request)
    path = policy.organization.path
    tokens = ClaimToken.objects.for_actor(actor, "view").filter(policy=policy).order_by("-id")
    context = {
        "organization": policy.organization,
        "policy": policy,
        "authorities": policy.authorities.order_by("name"),
        "tokens": tokens[:200],
        "now": timezone.now(),
        "token_form": token_form,
        "can_change": actor.has_perm("enrollmentpolicy.change", path),
        "can_add_token": actor.has_perm("enrollmentpolicy.add", path),
        "can_revoke": actor.has_perm("enrollmentpolicy.delete", path),
    }
    return render(request, "devices/enrollment_detail.html", context, status=status)


@login_required
def policy_detail(request: HttpRequest, policy_id: uuid.UUID) -> HttpResponse:
    return _detail(request, _policy_for(request, policy_id), ClaimTokenForm())


@login_required
@require_POST
def policy_toggle(request: HttpRequest, policy_id: uuid.UUID) -> HttpResponse:
    policy = _policy_for(request, policy_id, "enrollmentpolicy.change")
    enabled = not policy.enabled
    enrollment_policies.policy_update(actor=_actor(request), policy=policy, enabled=enabled)
    messages.success(request, f"{policy.name} {'enabled' if enabled else 'disabled'}.")
    return redirect("enrollment:detail", policy_id=policy.pk)


@login_required
@require_POST
def claim_token_create(request: HttpRequest, policy_id: uuid.UUID) -> HttpResponse:
    policy = _policy_for(request, policy_id, "enrollmentpolicy.add")
    form = ClaimTokenForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            issued = enrollment_policies.claim_token_create(
                actor=_actor(request),
                policy=policy,
                label=data["label"],
                max_uses=data["max_uses"],
                expires_at=timezone.now() + dt.timedelta(days=data["valid_days"]),
                created_by=request.user if isinstance(request.user, User) else None,
            )
        except ValidationError as error:
            apply_service_error(form, error)
        else:
            key = TOKEN_SESSION_KEY.format(issued.claim_token.pk)
            request.session[key] = issued.token
            return redirect("enrollment:token-created", token_id=issued.claim_token.pk)
    return _detail(request, policy, form, status=400)


@login_required
def claim_token_created(request: HttpRequest, token_id: uuid.UUID) -> HttpResponse:
    """The new token's secret, exactly once: it leaves the session as it is rendered."""
    claim_token = get_object_or_404(
        ClaimToken.objects.for_actor(_actor(request), "view").select_related(
            "policy__organization"
        ),
        pk=token_id,
    )
    token = request.session.pop(TOKEN_SESSION_KEY.format(claim_token.pk), None)
    context = {
        "claim_token": claim_token,
        "policy": claim_token.policy,
        "organization": claim_token.policy.organization,
        "token": token,
    }
    response = render(request, "devices/claim_token_created.html", context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def claim_token_revoke(request: HttpRequest, token_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    claim_token = get_object_or_404(
        ClaimToken.objects.for_actor(actor, "view").select_related("policy__organization"),
        pk=token_id,
    )
    if not actor.has_perm("enrollmentpolicy.delete", claim_token.policy.organization.path):
        raise PermissionDenied
    enrollment_policies.claim_token_revoke(actor=actor, claim_token=claim_token)
    messages.success(request, f"Claim token {claim_token.prefix} revoked.")
    return redirect("enrollment:detail", policy_id=claim_token.policy_id)
