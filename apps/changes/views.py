"""Portal pages of change requests (namespace ``changes``): the list, the approvals inbox,
a generic "new request" form, one request (spec, target, hash, timeline, approvals, dry run
with per-device diffs, progress) and its actions (approve, reject, execute, cancel).

Pages naming an organization are 404 outside the actor's view and 403 without the permission
there; a request is reached through ``for_actor`` (404 when unseen). Writes go through the
services with the request's actor; a refusal is shown as a message, nothing changes.
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.models import Organization
from apps.accounts.portal import organization_for
from apps.core.actors import Actor
from apps.core.paging import keyset_page
from apps.core.scoping import organization_ids_under

from . import execution, kinds, selectors, services
from .choices import ChangeStatus
from .forms import ChangeRequestFilterForm, ChangeRequestForm, DecisionForm
from .models import ChangeRequest

PAGE_SIZE = 50
PREVIEW_PAGE = 25
DONE = {
    "approve": "You approved this request.",
    "reject": "You rejected this request.",
    "execute": "The request was executed.",
    "cancel": "The request was cancelled.",
}


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


def _within(rows: QuerySet[ChangeRequest], organization: Organization) -> QuerySet[ChangeRequest]:
    return rows.filter(organization__in=organization_ids_under([organization.path]))


def _page(rows: QuerySet[ChangeRequest], before: str) -> tuple[list[ChangeRequest], str]:
    return keyset_page(rows, before, field="created_at", size=PAGE_SIZE)


@login_required
def request_list(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "changerequest.view")
    form = ChangeRequestFilterForm(request.GET)
    data = form.cleaned_data if form.is_valid() else {"status": "", "kind": ""}
    rows = _within(
        selectors.change_request_list(actor=actor, status=data["status"], kind=data["kind"]),
        organization,
    )
    page, cursor = _page(rows, request.GET.get("before", ""))
    query = {key: value for key, value in request.GET.items() if key != "before"}
    context = {
        "organization": organization,
        "form": form,
        "rows": page,
        "next_url": f"?{urlencode({**query, 'before': cursor})}" if cursor else "",
        "can_add": actor.has_perm("changerequest.add", organization.path) and kinds.names(),
    }
    return render(request, "changes/request_list.html", context)


@login_required
def inbox(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    """Requests waiting for the current user's approval, their own left out."""
    actor = _actor(request)
    organization = organization_for(request, organization_id, "changerequest.approve")
    rows = _within(selectors.approval_inbox(actor=actor), organization)
    context = {"organization": organization, "rows": list(rows[:200])}
    return render(request, "changes/inbox.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def request_new(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "changerequest.add")
    form = ChangeRequestForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            created = services.change_request_create(
                actor=actor,
                organization=organization,
                kind=data["kind"],
                title=data["title"],
                description=data["description"],
                spec=data["spec"],
                target=data["target"],
                resolve_at=data["resolve_at"],
                run_at=data["run_at"],
            )
        except ValidationError as error:
            _form_errors(form, error)
        else:
            messages.success(request, f"Change request created: {created.get_status_display()}.")
            return redirect("changes:detail", request_id=created.pk)
    status = 400 if request.method == "POST" else 200
    context = {"organization": organization, "form": form}
    return render(request, "changes/request_form.html", context, status=status)


def _form_errors(form: ChangeRequestForm, error: ValidationError) -> None:
    for field, messages_ in getattr(error, "message_dict", {"__all__": error.messages}).items():
        form.add_error(field if field in form.fields else None, messages_)


def _request_for(request: HttpRequest, request_id: uuid.UUID) -> ChangeRequest:
    visible = ChangeRequest.objects.for_actor(_actor(request), "view").select_related(
        "organization"
    )
    return get_object_or_404(visible, pk=request_id)


def _abilities(actor: Actor, change: ChangeRequest) -> dict[str, bool]:
    path = change.organization.path
    decided = (
        selectors.approvals_of(change)
        .filter(revision=change.revision)
        .filter(Q(approver_id=actor.user_id) if actor.user_id else Q(pk__in=[]))
        .exists()
    )
    creator = services.is_creator(actor, change)
    return {
        "is_creator": creator,
        "can_decide": actor.has_perm("changerequest.approve", path)
        and not creator
        and not decided
        and change.status == ChangeStatus.PENDING_APPROVAL,
        "can_execute": actor.has_perm("changerequest.execute", path)
        and change.status == ChangeStatus.APPROVED,
        "can_cancel": actor.has_perm("changerequest.change", path)
        and change.status in execution.CANCELLABLE,
    }


def _preview(actor: Actor, change: ChangeRequest, after: str) -> Any:
    try:
        cursor = uuid.UUID(after) if after else None
    except ValueError:
        raise Http404("Bad cursor.") from None
    return selectors.change_request_preview(
        actor=actor, request=change, after=cursor, limit=PREVIEW_PAGE
    )


def _details_url(change: ChangeRequest) -> str | None:
    """The kind's own page for an executed request (a bulk command's live progress), if any."""
    details = getattr(kinds.get(change.kind), "details_url", None)
    return details(request=change) if details is not None else None


@login_required
def request_detail(request: HttpRequest, request_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    change = _request_for(request, request_id)
    organization = organization_for(request, change.organization_id, "changerequest.view")
    running = change.status in (ChangeStatus.EXECUTING, ChangeStatus.COMPLETED)
    approvals = list(selectors.approvals_of(change))
    context = {
        "organization": organization,
        "change": change,
        "timeline": selectors.change_request_timeline(request=change),
        "approvals": [
            {
                "approval": approval,
                "valid": approval.revision == change.revision
                and approval.content_hash == change.content_hash,
            }
            for approval in approvals
        ],
        "valid_approvals": services.valid_approvals(change),
        "preview": _preview(actor, change, request.GET.get("after", "")),
        "progress": kinds.get(change.kind).progress(request=change) if running else None,
        "details_url": _details_url(change) if running else None,
        "spec_json": json.dumps(change.spec, indent=2, sort_keys=True),
        "target_json": json.dumps(change.target, indent=2, sort_keys=True),
        "decision_form": DecisionForm(initial={"content_hash": change.content_hash}),
        "expired": change.expires_at <= timezone.now(),
        **_abilities(actor, change),
    }
    return render(request, "changes/request_detail.html", context)


@login_required
@require_POST
def request_action(request: HttpRequest, request_id: uuid.UUID, verb: str) -> HttpResponse:
    """Approve / reject (bound to the hash the page showed), execute or cancel."""
    if verb not in DONE:
        raise Http404("No such action.")
    actor = _actor(request)
    change = _request_for(request, request_id)
    try:
        if verb in ("approve", "reject"):
            form = DecisionForm(request.POST)
            if not form.is_valid():
                raise ValidationError("The page was incomplete: reload it and try again.")
            decide = getattr(services, f"change_request_{verb}")
            decide(actor=actor, request=change, **form.cleaned_data)
        else:
            getattr(execution, f"change_request_{verb}")(actor=actor, request=change)
    except services.Refused as refused:
        messages.error(request, refused.message)
    except ValidationError as invalid:
        messages.error(request, " ".join(invalid.messages))
    else:
        messages.success(request, DONE[verb])
    return redirect("changes:detail", request_id=change.pk)
