"""Portal pages for organizations, members, invitations, API keys, the audit log and security.

Every page names its organization in the URL (``/o/<id>/...``) or reaches an object by id;
both go through ``for_actor``: outside the actor's view is 404, visible without the action's
permission is 403. Writes go through ``services`` with ``actor=request.actor``.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any
from urllib.parse import urlencode

from allauth.mfa.models import Authenticator
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.models import AuditLog
from apps.core.selectors import audit_log_csv, audit_log_list

from . import services
from .adapters import PENDING_INVITATION_KEY
from .forms import APIKeyForm, AuditFilterForm, InvitationForm, RoleForm, apply_service_error
from .models import APIKey, Invitation, Membership, Organization
from .portal import (
    current_organization,
    organization_for,
    require_perm,
    set_current_organization,
    visible_organizations,
)

AUDIT_PAGE_SIZE = 50
API_KEY_TOKEN_KEY = "portal_api_key_token:{}"


def _actor(request: HttpRequest) -> Any:
    return request.actor  # type: ignore[attr-defined]


# --- organizations -----------------------------------------------------------------------------


@login_required
def home(request: HttpRequest) -> HttpResponse:
    organization = current_organization(request)
    if organization is None:
        return render(request, "portal/no_organization.html")
    return redirect("portal:dashboard", organization_id=organization.pk)


@login_required
def dashboard(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "organization.view")
    children = visible_organizations(actor).filter(parent=organization).order_by("name")
    context: dict[str, Any] = {"organization": organization, "children": children}
    if actor.has_perm("membership.view", organization.path):
        context["member_count"] = Membership.objects.filter(organization=organization).count()
    if actor.has_perm("invitation.view", organization.path):
        pending = Invitation.objects.filter(
            organization=organization,
            revoked_at=None,
            accepted_at=None,
            expires_at__gt=datetime.datetime.now(tz=datetime.UTC),
        )
        context["pending_invitation_count"] = pending.count()
    if actor.has_perm("apikey.view", organization.path):
        keys = APIKey.objects.filter(organization=organization, revoked_at=None)
        context["active_api_key_count"] = keys.filter(
            Q(expires_at=None) | Q(expires_at__gt=datetime.datetime.now(tz=datetime.UTC))
        ).count()
    return render(request, "portal/dashboard.html", context)


@login_required
@require_POST
def organization_switch(request: HttpRequest) -> HttpResponse:
    """Make another visible organization the current one (kept in the session)."""
    try:
        organization_id = uuid.UUID(request.POST.get("organization", ""))
    except ValueError:
        raise Http404("No such organization.") from None
    organization = get_object_or_404(visible_organizations(_actor(request)), pk=organization_id)
    set_current_organization(request, organization)
    return redirect("portal:dashboard", organization_id=organization.pk)


# --- members -----------------------------------------------------------------------------------


def _members_page(
    request: HttpRequest, organization: Organization, *, error: str = "", status: int = 200
) -> HttpResponse:
    actor = _actor(request)
    memberships = (
        Membership.objects.for_actor(actor, "view")
        .filter(organization=organization)
        .select_related("user")
        .order_by("user__email")
    )
    role_form = RoleForm()
    role_form.limit_roles(actor, organization)
    context = {
        "organization": organization,
        "memberships": memberships,
        "role_choices": role_form.fields["role"].choices,  # type: ignore[attr-defined]
        "can_change": actor.has_perm("membership.change", organization.path),
        "can_delete": actor.has_perm("membership.delete", organization.path),
        "can_invite": actor.has_perm("invitation.add", organization.path),
        "error": error,
    }
    return render(request, "portal/members.html", context, status=status)


@login_required
def members(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    organization = organization_for(request, organization_id, "membership.view")
    return _members_page(request, organization)


def _membership_for(request: HttpRequest, membership_id: uuid.UUID, permission: str) -> Membership:
    membership = get_object_or_404(
        Membership.objects.for_actor(_actor(request), "view").select_related(
            "organization", "user"
        ),
        pk=membership_id,
    )
    require_perm(_actor(request), permission, membership.organization)
    return membership


def _error_text(error: ValidationError) -> str:
    return " ".join(error.messages)


@login_required
@require_POST
def membership_change_role(request: HttpRequest, membership_id: uuid.UUID) -> HttpResponse:
    membership = _membership_for(request, membership_id, "membership.change")
    organization = membership.organization
    form = RoleForm(request.POST)
    form.limit_roles(_actor(request), organization)
    if not form.is_valid():
        message = f"Role for {membership.user.email}: " + " ".join(
            str(error) for error in form.errors["role"]
        )
        return _members_page(request, organization, error=message, status=400)
    try:
        services.membership_change_role(
            actor=_actor(request), membership=membership, role=form.cleaned_data["role"]
        )
    except ValidationError as error:
        message = f"Role for {membership.user.email}: {_error_text(error)}"
        return _members_page(request, organization, error=message, status=400)
    messages.success(
        request, f"{membership.user.email} is now {form.cleaned_data['role']} of {organization}."
    )
    return redirect("portal:members", organization_id=organization.pk)


@login_required
@require_POST
def membership_remove(request: HttpRequest, membership_id: uuid.UUID) -> HttpResponse:
    membership = _membership_for(request, membership_id, "membership.delete")
    organization = membership.organization
    try:
        services.membership_delete(actor=_actor(request), membership=membership)
    except ValidationError as error:
        message = f"Removing {membership.user.email}: {_error_text(error)}"
        return _members_page(request, organization, error=message, status=400)
    messages.success(request, f"{membership.user.email} was removed from {organization}.")
    return redirect("portal:members", organization_id=organization.pk)


# --- invitations -------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def invitations(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "invitation.view")
    can_add = actor.has_perm("invitation.add", organization.path)
    form = InvitationForm(request.POST if request.method == "POST" else None)
    form.limit_roles(actor, organization)
    if request.method == "POST":
        require_perm(actor, "invitation.add", organization)
        if form.is_valid():
            try:
                services.invitation_create(
                    actor=actor,
                    organization=organization,
                    email=form.cleaned_data["email"],
                    role=form.cleaned_data["role"],
                    invited_by=request.user,  # type: ignore[arg-type]
                )
            except ValidationError as error:
                apply_service_error(form, error)
            else:
                messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
                return redirect("portal:invitations", organization_id=organization.pk)
    rows = (
        Invitation.objects.for_actor(actor, "view")
        .filter(organization=organization)
        .select_related("invited_by")
        .order_by("-created_at")
    )
    context = {
        "organization": organization,
        "invitations": rows,
        "form": form,
        "can_add": can_add,
        "can_revoke": actor.has_perm("invitation.delete", organization.path),
    }
    return render(request, "portal/invitations.html", context, status=400 if form.errors else 200)


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, invitation_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    invitation = get_object_or_404(
        Invitation.objects.for_actor(actor, "view").select_related("organization"),
        pk=invitation_id,
    )
    require_perm(actor, "invitation.delete", invitation.organization)
    try:
        services.invitation_revoke(actor=actor, invitation=invitation)
    except ValidationError as error:
        messages.error(request, _error_text(error))
    else:
        messages.success(request, f"The invitation for {invitation.email} was revoked.")
    return redirect("portal:invitations", organization_id=invitation.organization_id)


@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Accept an emailed invitation. A visitor who is not signed in keeps the token in the
    session (it opens sign-up for that address) and comes back here after signing in/up."""
    invitation = services.invitation_by_token(token)
    if invitation is None or invitation.status != "pending":
        status = invitation.status if invitation else "invalid"
        return render(request, "portal/invitation_accept.html", {"problem": status}, status=404)
    if not request.user.is_authenticated:
        request.session[PENDING_INVITATION_KEY] = token
        target = "account_login" if _has_account(invitation.email) else "account_signup"
        return HttpResponseRedirect(
            reverse(target) + "?" + urlencode({"next": request.get_full_path()})
        )
    context: dict[str, Any] = {"invitation": invitation, "token": token}
    if request.method == "POST":
        try:
            membership = services.invitation_accept(
                actor=_actor(request),
                user=request.user,
                token=token,  # type: ignore[arg-type]
            )
        except ValidationError as error:
            context["error"] = _error_text(error)
            return render(request, "portal/invitation_accept.html", context, status=400)
        request.session.pop(PENDING_INVITATION_KEY, None)
        set_current_organization(request, membership.organization)
        messages.success(request, f"Welcome to {membership.organization}.")
        return redirect("portal:dashboard", organization_id=membership.organization_id)
    context["wrong_user"] = invitation.email != request.user.email.lower()  # type: ignore[union-attr]
    return render(request, "portal/invitation_accept.html", context)


def _has_account(email: str) -> bool:
    from .models import User

    return User.objects.filter(email__iexact=email).exists()


# --- API keys ----------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "apikey.view")
    form = APIKeyForm(request.POST if request.method == "POST" else None)
    form.limit_roles(actor, organization)
    if request.method == "POST":
        require_perm(actor, "apikey.add", organization)
        if form.is_valid():
            try:
                issued = services.api_key_create(
                    actor=actor,
                    organization=organization,
                    name=form.cleaned_data["name"],
                    role=form.cleaned_data["role"],
                    expires_at=form.expires_at(),
                    created_by=request.user,  # type: ignore[arg-type]
                )
            except ValidationError as error:
                apply_service_error(form, error)
            else:
                request.session[API_KEY_TOKEN_KEY.format(issued.api_key.pk)] = issued.token
                return redirect("portal:api-key-created", api_key_id=issued.api_key.pk)
    keys = APIKey.objects.for_actor(actor, "view").filter(organization=organization)
    context = {
        "organization": organization,
        "api_keys": keys.select_related("created_by").order_by("-created_at"),
        "form": form,
        "can_add": actor.has_perm("apikey.add", organization.path),
        "can_revoke": actor.has_perm("apikey.delete", organization.path),
    }
    return render(request, "portal/api_keys.html", context, status=400 if form.errors else 200)


@login_required
def api_key_created(request: HttpRequest, api_key_id: uuid.UUID) -> HttpResponse:
    """Shows the new key's secret exactly once: it leaves the session as it is rendered."""
    api_key = get_object_or_404(
        APIKey.objects.for_actor(_actor(request), "view").select_related("organization"),
        pk=api_key_id,
    )
    token = request.session.pop(API_KEY_TOKEN_KEY.format(api_key.pk), None)
    context = {"api_key": api_key, "organization": api_key.organization, "token": token}
    response = render(request, "portal/api_key_created.html", context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, api_key_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    api_key = get_object_or_404(
        APIKey.objects.for_actor(actor, "view").select_related("organization"), pk=api_key_id
    )
    require_perm(actor, "apikey.delete", api_key.organization)
    services.api_key_revoke(actor=actor, api_key=api_key)
    messages.success(request, f"The API key {api_key.name} ({api_key.prefix}) was revoked.")
    return redirect("portal:api-keys", organization_id=api_key.organization_id)


# --- audit log ---------------------------------------------------------------------------------


def _parse_cursor(value: str) -> tuple[datetime.datetime, uuid.UUID] | None:
    stamp, _, row_id = value.partition("|")
    try:
        created_at = parse_datetime(stamp)
        return (created_at, uuid.UUID(row_id)) if created_at else None
    except ValueError:
        return None


def _older_than(rows: QuerySet[AuditLog], cursor: tuple[datetime.datetime, uuid.UUID]) -> Any:
    created_at, row_id = cursor
    return rows.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, id__lt=row_id))


def _audit_rows(request: HttpRequest, organization: Organization, form: AuditFilterForm) -> Any:
    filters = form.selector_filters() if form.is_valid() else {}
    return audit_log_list(actor=_actor(request), organization_id=organization.pk, **filters)


@login_required
def audit_log(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    organization = organization_for(request, organization_id, "auditlog.view")
    form = AuditFilterForm(request.GET)
    rows = _audit_rows(request, organization, form)
    cursor = _parse_cursor(request.GET.get("before", ""))
    if cursor is not None:
        rows = _older_than(rows, cursor)
    page = list(rows[: AUDIT_PAGE_SIZE + 1])
    older_url = ""
    if len(page) > AUDIT_PAGE_SIZE:
        page = page[:AUDIT_PAGE_SIZE]
        query = request.GET.copy()
        query["before"] = f"{page[-1].created_at.isoformat()}|{page[-1].id}"
        older_url = f"{request.path}?{query.urlencode()}"
    export_query = request.GET.copy()
    export_query.pop("before", None)
    context = {
        "organization": organization,
        "form": form,
        "entries": page,
        "older_url": older_url,
        "is_older_page": cursor is not None,
        "can_export": _actor(request).has_perm("auditlog.export", organization.path),
        "export_query": export_query.urlencode(),
    }
    if request.headers.get("HX-Request"):
        return render(request, "portal/partials/audit_rows.html", context)
    return render(request, "portal/audit_log.html", context, status=400 if form.errors else 200)


@login_required
def audit_log_export(request: HttpRequest, organization_id: uuid.UUID) -> StreamingHttpResponse:
    organization = organization_for(request, organization_id, "auditlog.export")
    form = AuditFilterForm(request.GET)
    rows = _audit_rows(request, organization, form)
    response = StreamingHttpResponse(audit_log_csv(rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{organization.slug}.csv"'
    return response


# --- account -----------------------------------------------------------------------------------


@login_required
def security(request: HttpRequest) -> HttpResponse:
    types = set(Authenticator.objects.filter(user=request.user).values_list("type", flat=True))
    context = {
        "totp_active": Authenticator.Type.TOTP in types,
        "recovery_codes_active": Authenticator.Type.RECOVERY_CODES in types,
        "mfa_required": services.user_mfa_required(request.user),  # type: ignore[arg-type]
    }
    return render(request, "portal/security.html", context)
